import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { CommitPointSteps } from '../app/commit-point-steps.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// `COMMIT AND CHAIN` commits the transaction and opens the next one at once (same
// isolation level); `ROLLBACK AND CHAIN` rolls it back and does the same. PostgreSQL 12+,
// MySQL and MariaDB have them; SQLite does not.
describe.each(databases().filter((kind) => kind !== 'sqlite'))('COMMIT / ROLLBACK AND CHAIN sent by hand in a TypeORM transaction on %s', (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'chain', (app) => {
    t = app;
  });


  /** In a request: the committed inserts are claimed by its one intent event, alice's, and nothing else is recorded. */
  const expectClaimedByRequest = async (requestId: string, committed: string[]) => {
    expect(await storedNotes(t.dataSource)).toEqual([...committed].sort());
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    for (const insert of inserts) {
      expect([insert.row.action, insert.row.kind, insert.row.outcome, insert.row.actorType, insert.row.actorId, insert.row.requestId]).toEqual([
        'orders.stepped',
        'intent',
        'success',
        'user',
        '1',
        requestId,
      ]);
    }
    expect((await t.rows()).map((row) => [row.action, row.requestId])).toEqual([['orders.stepped', requestId]]);
  };

  it('COMMIT AND CHAIN between two saves, then commitTransaction(): both inserts are claimed once by the request', async () => {
    const { requestId, failed } = await request(['start', 'save:before', 'sql:COMMIT AND CHAIN', 'save:after', 'commit']);
    expect(failed).toEqual([]);
    await expectClaimedByRequest(requestId, ['before', 'after']);
  });

  it('COMMIT AND CHAIN, then rollbackTransaction(): the insert it committed is recorded, the one rolled back is not', async () => {
    const { requestId } = await request(['start', 'save:before', 'sql:commit and chain', 'save:after', 'rollback']);
    await expectClaimedByRequest(requestId, ['before']);
  });

  it('ROLLBACK AND CHAIN between two saves, then commitTransaction(): only the insert after it is recorded', async () => {
    const { requestId } = await request(['start', 'save:before', 'sql:ROLLBACK AND CHAIN', 'save:after', 'commit']);
    await expectClaimedByRequest(requestId, ['after']);
  });

  it('several chained ends in one transaction: each committed insert once, the rolled-back ones never', async () => {
    const { requestId } = await request([
      'start',
      'save:one',
      'sql:COMMIT WORK AND CHAIN',
      'save:two',
      'sql:ROLLBACK WORK AND CHAIN',
      'save:three',
      'sql:COMMIT AND CHAIN',
      'save:four',
      'sql:COMMIT AND NO CHAIN',
      // Now in no transaction: autocommitted, recorded right after.
      'save:five',
      'try-commit',
    ]);
    await expectClaimedByRequest(requestId, ['one', 'three', 'four', 'five']);
  });

  it('COMMIT AND CHAIN inside a savepoint of TypeORM commits the whole transaction: the inserts before it are recorded, the chained one follows its own end', async () => {
    const { requestId } = await request([
      'start',
      'save:outer',
      'start',
      'save:inner',
      'sql:COMMIT AND CHAIN',
      'save:chained',
      'sql:ROLLBACK',
      // TypeORM still counts two levels: its RELEASE / ROLLBACK TO SAVEPOINT fail, as without the module.
      'try-commit',
      'try-rollback',
    ]);
    await expectClaimedByRequest(requestId, ['outer', 'inner']);
  });

  it('a raw savepoint before COMMIT AND CHAIN ends with it; one set after it belongs to the chained transaction', async () => {
    const { requestId } = await request([
      'start',
      'sql:SAVEPOINT first',
      'save:kept',
      'sql:COMMIT AND CHAIN',
      'sql:SAVEPOINT second',
      'save:dropped',
      'sql:ROLLBACK TO SAVEPOINT second',
      'save:last',
      'commit',
    ]);
    await expectClaimedByRequest(requestId, ['kept', 'last']);
  });

  it('outside a unit of work: each committed insert has one fallback event of the system, the rolled-back one none', async () => {
    const steps = t.app.get(CommitPointSteps);
    await steps.run(['start', 'save:before', 'sql:COMMIT AND CHAIN', 'save:chained', 'sql:COMMIT AND CHAIN', 'save:dropped', 'sql:ROLLBACK AND CHAIN', 'save:after', 'commit']);
    expect(await storedNotes(t.dataSource)).toEqual(['after', 'before', 'chained']);
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], ['before', 'chained', 'after']);
    for (const insert of inserts) {
      expect([insert.row.action, insert.row.kind, insert.row.actorType, insert.row.requestId]).toEqual(['order.created', 'change', 'system', null]);
      expect(insert.row.changes).toHaveLength(1);
    }
    expect(await t.rows()).toHaveLength(3);
  });
});
