import { describe, expect, it } from 'vitest';
import type { TestApp } from '../app/create-test-app.js';
import { CommitPointSteps } from '../app/commit-point-steps.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// A `BEGIN` or `START TRANSACTION` the app sends by hand in an open transaction: MySQL and
// MariaDB commit the open transaction and start a new one; PostgreSQL only warns (the
// transaction goes on); SQLite refuses it (the transaction goes on).
describe.each(databases())('BEGIN / START TRANSACTION sent by hand inside a TypeORM transaction on %s', (kind) => {
  let t!: TestApp;
  const mariadb = kind === 'mariadb';
  const request = commitPointApp(kind, 'begin', (app) => {
    t = app;
  });


  const expectClaimedByRequest = async (requestId: string, committed: string[]) => {
    expect(await storedNotes(t.dataSource)).toEqual([...committed].sort());
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    for (const insert of inserts) {
      expect([insert.row.action, insert.row.kind, insert.row.outcome, insert.row.actorId, insert.row.requestId]).toEqual([
        'orders.stepped',
        'intent',
        'success',
        '1',
        requestId,
      ]);
    }
    expect((await t.rows()).map((row) => [row.action, row.requestId])).toEqual([['orders.stepped', requestId]]);
  };

  // SQLite refuses BEGIN in a transaction: the step is a `try`.
  const begin = (statement: string) => (kind === 'sqlite' ? `try:${statement}` : `sql:${statement}`);

  it('BEGIN between two saves, then commitTransaction(): both inserts are claimed once', async () => {
    const { requestId, failed } = await request(['start', 'save:before', begin('BEGIN'), 'save:after', 'commit']);
    expect(failed.length).toBe(kind === 'sqlite' ? 1 : 0);
    await expectClaimedByRequest(requestId, ['before', 'after']);
  });

  it('START TRANSACTION between two saves, then rollbackTransaction(): on MariaDB the insert before it committed and is recorded; elsewhere nothing is', async () => {
    const { requestId } = await request(['start', 'save:before', begin('START TRANSACTION'), 'save:after', 'rollback']);
    await expectClaimedByRequest(requestId, mariadb ? ['before'] : []);
  });

  it('BEGIN WORK, then START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE, then a rollback: each committed insert once', async () => {
    const { requestId } = await request([
      'start',
      'save:one',
      begin('begin work'),
      'save:two',
      begin(mariadb ? '/* next */ START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE' : '/* next */ START TRANSACTION READ WRITE'),
      'save:three',
      'rollback',
    ]);
    await expectClaimedByRequest(requestId, mariadb ? ['one', 'two'] : []);
  });

  it('BEGIN inside a savepoint of TypeORM, then a raw ROLLBACK: on MariaDB every level before BEGIN is committed and recorded', async () => {
    const { requestId } = await request([
      'start',
      'save:outer',
      'start',
      'save:inner',
      begin('BEGIN'),
      'save:after',
      'sql:ROLLBACK',
      // TypeORM still counts two levels: its ROLLBACK TO SAVEPOINT fails, as without the module.
      'try-rollback',
    ]);
    await expectClaimedByRequest(requestId, mariadb ? ['outer', 'inner'] : []);
  });

  it.runIf(mariadb)('MariaDB: BEGIN NOT ATOMIC … END (a compound statement) commits nothing: a rollback after it leaves no record', async () => {
    const { requestId } = await request(['start', 'save:before', 'sql:BEGIN NOT ATOMIC SELECT 1; END', 'save:after', 'rollback']);
    await expectClaimedByRequest(requestId, []);
  });

  it('outside a unit of work: each insert BEGIN committed has one fallback event of the system, the rolled-back ones none', async () => {
    await t.app.get(CommitPointSteps).run(['start', 'save:before', begin('BEGIN'), 'save:after', 'rollback']);
    const committed = mariadb ? ['before'] : [];
    expect(await storedNotes(t.dataSource)).toEqual(committed);
    const inserts = await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    for (const insert of inserts) expect([insert.row.action, insert.row.kind, insert.row.actorType]).toEqual(['order.created', 'change', 'system']);
    expect(await t.rows()).toHaveLength(committed.length);
  });
});
