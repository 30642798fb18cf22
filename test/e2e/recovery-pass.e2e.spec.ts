// `JournalRecovery.runPass()` while a pass is already running (the timer's, another
// caller's): the pass the caller waits for must start after the call, so that it sees
// what was written before it. Returning the pass under way left journal rows written
// meanwhile unrecovered when that pass had read the journal already.
import { afterEach, describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const OLD = new Date(Date.now() - 600_000);

/** A journal row of a unit of a dead instance: one change of an order, nothing else known. */
const journalRow = (id: string, unitId: string, instanceId: string) => ({
  id,
  unitId,
  instanceId,
  createdAt: OLD,
  entry: {
    source: 'job',
    request: {},
    changes: [{ entity: 'Order', id: unitId.slice(-4), operation: 'update' as const, fields: { total: { from: 1, to: 2 } }, at: OLD.getTime() }],
  },
});

describe.each(databases().filter((kind) => kind !== 'sqlite'))('journal recovery: runPass() while a pass is running, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = db = undefined;
  });

  /** Whether a DELETE of audit_journal waits for a row lock (this test's schema or database only). */
  const deleteIsWaiting = async (app: TestApp): Promise<boolean> => {
    const journal = app.dataSource.getMetadata(AuditJournalEntity).tableName;
    if (kind === 'postgres') {
      const schema = (db!.options as { schema: string }).schema;
      const [row] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
        [`DELETE FROM "${schema}"."${journal}"%`],
      );
      return Number(row.n) > 0;
    }
    const database = (db!.options as { database: string }).database;
    // A one-row DELETE still running after 200 ms waits for the row's lock.
    const [row] = await app.dataSource.query(
      `SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND INFO LIKE ? AND TIME_MS > 200`,
      [database, `DELETE FROM \`${journal}\`%`],
    );
    return Number(row.n) > 0;
  };

  it('rows written while a pass is under way are recovered by the pass runPass() returns', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 60_000 } });
    const app = t;
    const instances = app.dataSource.getRepository(AuditInstanceEntity);
    const journal = app.dataSource.getRepository(AuditJournalEntity);
    const recovery = app.app.get(JournalRecovery);
    const first = journalRow('01900000-0000-7000-8000-0000000f0001', '01900000-0000-7000-8000-0000000e0001', '01900000-0000-7000-8000-0000000d0001');
    await instances.insert({ id: first.instanceId, startedAt: OLD, heartbeatAt: OLD });
    await journal.insert(first);

    // Another transaction holds the first unit's row: a pass that reaches it waits there.
    const holder = app.dataSource.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    try {
      await holder.manager.getRepository(AuditJournalEntity).createQueryBuilder('j').setLock('pessimistic_write').where('j.id = :id', { id: first.id }).getOne();
      const underWay = recovery.runPass();
      const deadline = Date.now() + 20_000;
      while (!(await deleteIsWaiting(app))) {
        if (Date.now() > deadline) throw new Error('the pass never reached the locked journal row');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Meanwhile, another dead instance's unit: the pass under way listed the dead instances before it.
      const second = journalRow('01900000-0000-7000-8000-0000000f0002', '01900000-0000-7000-8000-0000000e0002', '01900000-0000-7000-8000-0000000d0002');
      await instances.insert({ id: second.instanceId, startedAt: OLD, heartbeatAt: OLD });
      await journal.insert(second);
      const asked = recovery.runPass();
      await holder.rollbackTransaction();
      await Promise.all([underWay, asked]);
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }

    expect(await journal.count()).toBe(0);
    const events = await app.dataSource.getRepository(AuditLogEntity).find({ order: { targetId: 'ASC' } });
    expect(events.map((event) => [event.kind, event.changes?.[0]?.id])).toEqual([
      ['change', '0001'],
      ['change', '0002'],
    ]);
  }, 60_000);
});
