import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// A raw ROLLBACK TO SAVEPOINT naming a savepoint of TypeORM's (typeorm_1), sent while raw
// savepoints are set above it: every insert made since TypeORM's savepoint is undone.
describe.each(databases())("a raw ROLLBACK TO TypeORM's savepoint under raw ones on %s", (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'deep', (app) => {
    t = app;
  });

  const expectClaimed = async (requestId: string, committed: string[]) => {
    expect(await storedNotes(t.dataSource)).toEqual([...committed].sort());
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    for (const insert of inserts) expect([insert.row.kind, insert.row.requestId]).toEqual(['intent', requestId]);
  };

  it("TypeORM's savepoint, two raw ones inside, ROLLBACK TO SAVEPOINT typeorm_1, a save, commitTransaction() twice: the inserts undone are in no event", async () => {
    const { requestId } = await request([
      'start',
      'save:a',
      'start',
      'save:b',
      'sql:SAVEPOINT r1',
      'save:c',
      'sql:SAVEPOINT r2',
      'save:d',
      'sql:ROLLBACK TO SAVEPOINT typeorm_1',
      'save:e',
      'commit',
      'commit',
    ]);
    await expectClaimed(requestId, ['a', 'e']);
  });

  it("TypeORM's savepoint, no raw one, ROLLBACK TO SAVEPOINT typeorm_1, a save, commitTransaction() twice: the insert undone is in no event", async () => {
    const { requestId } = await request(['start', 'save:a', 'start', 'save:b', 'sql:ROLLBACK TO SAVEPOINT typeorm_1', 'save:e', 'commit', 'commit']);
    await expectClaimed(requestId, ['a', 'e']);
  });
});
