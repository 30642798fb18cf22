import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// On PostgreSQL `TRANSACTION` is not a reserved word: `PREPARE transaction AS SELECT 1`
// creates a prepared statement named "transaction" and leaves the session's transaction
// open. It is not `PREPARE TRANSACTION 'id'`, and is no commit point.
describe.each(databases().filter((kind) => kind === 'postgres'))('a prepared statement named "transaction" in a TypeORM transaction on %s', (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'prepare-name', (app) => {
    t = app;
  });


  it.each([
    ['PREPARE transaction AS SELECT 1'],
    ['prepare Transaction (int) AS SELECT $1::int'],
    ['PREPARE /* a name */ transaction AS SELECT 1'],
  ])('%s, a save after it, then rollbackTransaction(): nothing is recorded', async (sql) => {
    const { failed } = await request(['start', 'save:a', `sql:${sql}`, 'save:b', 'sql:DEALLOCATE transaction', 'rollback']);
    expect(failed).toEqual([]);
    expect(await storedNotes(t.dataSource)).toEqual([]);
    await expectRecordedOnce(() => t.rows(), [t.dataSource], []);
  });

  it.each([
    ['PREPARE transaction AS SELECT 1'],
    ['prepare Transaction (int) AS SELECT $1::int'],
  ])('%s, a save after it, then commitTransaction(): both inserts are recorded once, in the request event', async (sql) => {
    const { requestId, failed } = await request(['start', 'save:a', `sql:${sql}`, 'save:b', 'sql:DEALLOCATE transaction', 'commit']);
    expect(failed).toEqual([]);
    expect(await storedNotes(t.dataSource)).toEqual(['a', 'b']);
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], ['a', 'b']);
    expect(inserts.map((insert) => insert.row.requestId)).toEqual([requestId, requestId]);
  });
});
