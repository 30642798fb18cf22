import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { CommitPointSteps, CommitPointStepsController, type StepsResult } from '../app/commit-point-steps.js';
import { Order } from '../app/order.entity.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// A savepoint the app set with raw SQL and never released is still set when the app
// ends the transaction by hand: the commit point commits it with the transaction.
describe.each(databases())('a commit point sent by hand while a raw savepoint is still set, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let requestCount = 0;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [CommitPointStepsController], providers: [CommitPointSteps] });
    if (kind === 'mariadb') await t.dataSource.query('CREATE TABLE staging (id int PRIMARY KEY)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.dataSource.getRepository(Order).clear();
    await t.clearAudit();
  });

  const request = async (steps: string[]): Promise<StepsResult & { requestId: string; status: number }> => {
    const requestId = `open-savepoint-${kind}-${++requestCount}`;
    const response = await t.request('/commit-point-steps', {
      method: 'POST',
      json: { steps },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    const body = (await response.json()) as StepsResult & { message?: string };
    expect([response.status, body.message]).toEqual([201, undefined]);
    return { ...body, requestId, status: response.status };
  };

  const expectClaimedByRequest = async (requestId: string, committed: string[]) => {
    expect(await storedNotes(t.dataSource)).toEqual([...committed].sort());
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    for (const insert of inserts) {
      expect([insert.row.action, insert.row.kind, insert.row.actorId, insert.row.requestId]).toEqual(['orders.stepped', 'intent', '1', requestId]);
    }
    expect((await t.rows()).map((row) => [row.action, row.outcome])).toEqual([['orders.stepped', 'success']]);
  };

  it('SAVEPOINT, a save, a raw COMMIT: the statement succeeds and the insert is claimed once', async () => {
    const { requestId, failed } = await request(['start', 'save:outer', 'sql:SAVEPOINT open', 'save:in-savepoint', 'sql:COMMIT', 'try-commit']);
    // The late commitTransaction() fails on SQLite only (no transaction is open), as without the module.
    expect(failed.length).toBe(kind === 'sqlite' ? 1 : 0);
    await expectClaimedByRequest(requestId, ['outer', 'in-savepoint']);
  });

  it('two raw savepoints set, one inside a savepoint of TypeORM: the raw COMMIT commits every level', async () => {
    const { requestId } = await request([
      'start',
      'sql:SAVEPOINT a',
      'save:a',
      'start',
      'save:nested',
      'sql:SAVEPOINT b',
      'save:b',
      'sql:COMMIT',
      'try-commit',
      'try-rollback',
    ]);
    await expectClaimedByRequest(requestId, ['a', 'nested', 'b']);
  });

  it('outside a unit of work: the inserts the raw COMMIT committed have one fallback event each', async () => {
    await t.app.get(CommitPointSteps).run(['start', 'save:outer', 'sql:SAVEPOINT open', 'save:in-savepoint', 'sql:COMMIT', 'try-commit']);
    expect(await storedNotes(t.dataSource)).toEqual(['in-savepoint', 'outer']);
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], ['outer', 'in-savepoint']);
    for (const insert of inserts) expect([insert.row.kind, insert.row.actorType]).toEqual(['change', 'system']);
  });

  it.runIf(kind === 'mariadb')('MariaDB: TRUNCATE (an implicit commit) while a raw savepoint is set commits the save made in it: recorded once', async () => {
    const { requestId } = await request(['start', 'sql:SAVEPOINT open', 'save:staged', 'sql:TRUNCATE TABLE staging', 'try-rollback']);
    await expectClaimedByRequest(requestId, ['staged']);
  });
});
