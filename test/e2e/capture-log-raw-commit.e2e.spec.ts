import { describe, expect, it } from 'vitest';
import type { AuditLogEntity } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { CommitPointSteps } from '../app/commit-point-steps.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { commitPointApp } from '../support/commit-point-app.js';
import { databases } from '../support/test-database.js';

// `log(input, { manager })` in a transaction of a query runner: outside a unit of work the
// event is written in that transaction when it commits and rolls back with it — also when
// the app ends it by hand; inside one it is the unit's event, stored when the unit ends.
describe.each(databases())('log() in a transaction the app ends by hand, on %s', (kind) => {
  let t!: TestApp;
  const request = commitPointApp(kind, 'log-raw', async (app) => {
    t = app;
    if (kind === 'mariadb') await t.dataSource.query('CREATE TABLE staging (id int PRIMARY KEY)');
  });

  const outside = (steps: string[]) => t.app.get(CommitPointSteps).run(steps);
  const reviewed = (rows: AuditLogEntity[]) => rows.filter((row) => row.action === 'order.reviewed');
  /** A settled trail: nothing more arrives (the journal is empty and no event comes late). */
  const settledRows = async (committed: string[]) => {
    await expectRecordedOnce(() => t.rows(), [t.dataSource], committed);
    return t.rows();
  };

  describe('outside a unit of work', () => {
    it('a raw COMMIT: the event is written once, claiming the insert it targets', async () => {
      const { ids } = await outside(['start', 'save:a', 'log:a', 'sql:COMMIT', 'try-commit']);
      expect(await storedNotes(t.dataSource)).toEqual(['a']);
      const rows = await settledRows(['a']);
      expect(rows.map((row) => [row.action, row.kind, row.actorType, row.targetId, row.reason])).toEqual([['order.reviewed', 'intent', 'system', String(ids['a']), 'a']]);
      expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(ids['a']), operation: 'insert' })]);
    });

    it('a raw ROLLBACK: neither the event nor the insert is recorded', async () => {
      await outside(['start', 'save:a', 'log:a', 'sql:ROLLBACK', 'try-rollback']);
      expect(await storedNotes(t.dataSource)).toEqual([]);
      expect(await settledRows([])).toEqual([]);
    });

    it('a raw ROLLBACK, then the late commitTransaction(): still nothing is recorded', async () => {
      await outside(['start', 'save:a', 'log:a', kind === 'sqlite' ? 'sql:rollback transaction' : 'sql:rollback work', 'try-commit']);
      expect(await storedNotes(t.dataSource)).toEqual([]);
      expect(await settledRows([])).toEqual([]);
    });

    it('a log() in a raw savepoint rolled back, then a raw COMMIT: the insert has its fallback event, the event is gone', async () => {
      await outside(['start', 'save:a', 'sql:SAVEPOINT s', 'log:a', 'sql:ROLLBACK TO SAVEPOINT s', 'sql:COMMIT', 'try-commit']);
      const rows = await settledRows(['a']);
      expect(reviewed(rows)).toEqual([]);
      expect(rows.map((row) => [row.action, row.kind, row.actorType])).toEqual([['order.created', 'change', 'system']]);
    });

    it.runIf(kind !== 'sqlite')('COMMIT AND CHAIN, then a raw ROLLBACK: the first event is written with its insert, the chained one is gone with its insert', async () => {
      const { ids } = await outside(['start', 'save:a', 'log:a', 'sql:COMMIT AND CHAIN', 'save:b', 'log:b', 'sql:ROLLBACK', 'try-commit']);
      expect(await storedNotes(t.dataSource)).toEqual(['a']);
      const rows = await settledRows(['a']);
      expect(rows.map((row) => [row.action, row.targetId])).toEqual([['order.reviewed', String(ids['a'])]]);
    });

    it.runIf(kind === 'mariadb')('MariaDB: TRUNCATE (an implicit commit), then rollbackTransaction(): the event was committed with the insert', async () => {
      const { ids } = await outside(['start', 'save:a', 'log:a', 'sql:TRUNCATE TABLE staging', 'rollback']);
      expect(await storedNotes(t.dataSource)).toEqual(['a']);
      const rows = await settledRows(['a']);
      expect(rows.map((row) => [row.action, row.targetId])).toEqual([['order.reviewed', String(ids['a'])]]);
    });

    it('a log() after the raw COMMIT (TypeORM still counts the transaction open) is stored at once; the insert keeps its one record', async () => {
      const { ids } = await outside(['start', 'save:a', 'sql:COMMIT', 'log:a', 'try-rollback']);
      const rows = await settledRows(['a']);
      expect(rows.map((row) => [row.action, row.actorType]).sort()).toEqual([
        ['order.created', 'system'],
        ['order.reviewed', 'system'],
      ]);
      expect(reviewed(rows)[0]!.targetId).toBe(String(ids['a']));
    });
  });

  describe('in a request', () => {
    it('a raw COMMIT: the event is the request’s, alice’s, and the insert is recorded once', async () => {
      const { requestId, ids } = await request(['start', 'save:a', 'log:a', 'sql:COMMIT', 'try-commit']);
      const rows = await settledRows(['a']);
      expect(rows.map((row) => [row.action, row.actorId, row.requestId]).sort()).toEqual([
        ['order.reviewed', '1', requestId],
        ['orders.stepped', '1', requestId],
      ]);
      expect(reviewed(rows)[0]!.targetId).toBe(String(ids['a']));
    });

    it('a raw ROLLBACK: the event is the request’s and stays (the docs: stored when the unit ends), without the insert that never committed', async () => {
      const { requestId } = await request(['start', 'save:a', 'log:a', 'sql:ROLLBACK', 'try-rollback']);
      expect(await storedNotes(t.dataSource)).toEqual([]);
      const rows = await settledRows([]);
      expect(rows.map((row) => [row.action, row.actorId, row.requestId]).sort()).toEqual([
        ['order.reviewed', '1', requestId],
        ['orders.stepped', '1', requestId],
      ]);
      expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
    });
  });
});
