import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { CommitPointSteps, CommitPointStepsController, type StepsResult } from '../app/commit-point-steps.js';
import { Order } from '../app/order.entity.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// On PostgreSQL `TRANSACTION` is not a reserved word: `PREPARE transaction AS SELECT 1`
// creates a prepared statement named "transaction" and leaves the session's transaction
// open. It is not `PREPARE TRANSACTION 'id'`, and is no commit point.
describe.each(databases().filter((kind) => kind === 'postgres'))('a prepared statement named "transaction" in a TypeORM transaction on %s', (kind) => {
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
    const requestId = `prepare-name-${++requestCount}`;
    const response = await t.request('/commit-point-steps', {
      method: 'POST',
      json: { steps },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    return { ...((await response.json()) as StepsResult), requestId };
  };

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
