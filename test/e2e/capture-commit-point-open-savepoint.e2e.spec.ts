import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { CommitPointSteps } from '../app/commit-point-steps.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// A savepoint the app set with raw SQL and never released is still set when the app
// ends the transaction by hand: the commit point commits it with the transaction.
describe.each(databases())('a commit point sent by hand while a raw savepoint is still set, on %s', (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'open-savepoint', async (app) => {
    t = app;
    if (kind === 'mariadb') await t.dataSource.query('CREATE TABLE staging (id int PRIMARY KEY)');
  });


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
