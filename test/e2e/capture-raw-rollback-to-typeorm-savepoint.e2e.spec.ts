import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { CommitPointSteps, CommitPointStepsController, type StepsResult } from '../app/commit-point-steps.js';
import { Order } from '../app/order.entity.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// A raw ROLLBACK TO SAVEPOINT naming a savepoint of TypeORM's (typeorm_1), sent while raw
// savepoints are set above it: every insert made since TypeORM's savepoint is undone.
describe.each(databases())("a raw ROLLBACK TO TypeORM's savepoint under raw ones on %s", (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let requestCount = 0;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [CommitPointStepsController], providers: [CommitPointSteps] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.dataSource.getRepository(Order).clear();
    await t.clearAudit();
  });

  const request = async (steps: string[]): Promise<StepsResult & { requestId: string }> => {
    const requestId = `deep-${kind}-${++requestCount}`;
    const response = await t.request('/commit-point-steps', {
      method: 'POST',
      json: { steps },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    const body = (await response.json()) as StepsResult & { message?: string };
    expect([response.status, body.message]).toEqual([201, undefined]);
    return { ...body, requestId };
  };
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
