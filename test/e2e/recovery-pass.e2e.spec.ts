// `JournalRecovery.runPass()` while a pass is already running (the timer's, another
// caller's): the pass the caller waits for must start after the call, so that it sees
// what was written before it. Returning the pass under way left journal rows written
// meanwhile unrecovered when that pass had read the journal already. And the shutdown: no
// pass starts once it has begun (one queued then started on a data source being
// destroyed), and a pass held up by a lock does not hold it past `shutdownTimeout`.
import { DataSource, type DataSourceOptions, type QueryRunner } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import type { TestApp } from '../app/create-test-app.js';
import { databases } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';

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
  const env = appsPerTest();

  /** Whether a DELETE of audit_journal waits for a row lock (this test's schema or database only). */
  const deleteIsWaiting = async (app: TestApp): Promise<boolean> => {
    const journal = app.dataSource.getMetadata(AuditJournalEntity).tableName;
    if (kind === 'postgres') {
      const schema = (env.db.options as { schema: string }).schema;
      const [row] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
        [`DELETE FROM "${schema}"."${journal}"%`],
      );
      return Number(row.n) > 0;
    }
    const database = (env.db.options as { database: string }).database;
    // A one-row DELETE still running after 200 ms waits for the row's lock (its multi-table form names the table after USING).
    const [row] = await app.dataSource.query(
      `SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND (INFO LIKE ? OR INFO LIKE ?) AND TIME_MS > 200`,
      [database, `DELETE FROM \`${journal}\`%`, `DELETE FROM j USING \`${journal}\`%`],
    );
    return Number(row.n) > 0;
  };

  /** A unit of a dead instance, `n` its number; with `holder`, that transaction then holds its journal row. */
  const deadUnit = async (app: TestApp, n: number, holder?: QueryRunner): Promise<void> => {
    const row = journalRow(`01900000-0000-7000-8000-0000000f000${n}`, `01900000-0000-7000-8000-0000000e000${n}`, `01900000-0000-7000-8000-0000000d000${n}`);
    await app.dataSource.getRepository(AuditInstanceEntity).insert({ id: row.instanceId, startedAt: OLD, heartbeatAt: OLD });
    await app.dataSource.getRepository(AuditJournalEntity).insert(row);
    if (!holder) return;
    await holder.startTransaction();
    await holder.manager.getRepository(AuditJournalEntity).createQueryBuilder('j').setLock('pessimistic_write').where('j.id = :id', { id: row.id }).getOne();
  };

  const untilDeleteWaits = async (app: TestApp): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!(await deleteIsWaiting(app))) {
      if (Date.now() > deadline) throw new Error('the pass never reached the locked journal row');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  /** A transaction of its own on a connection that outlives the app's (the app is closed in these tests). */
  const holderOf = async (app: TestApp): Promise<{ holder: QueryRunner; end: () => Promise<void> }> => {
    const other = new DataSource({ ...(env.db.options as DataSourceOptions), entities: app.dataSource.options.entities } as DataSourceOptions);
    await other.initialize();
    const holder = other.createQueryRunner();
    await holder.connect();
    return {
      holder,
      end: async () => {
        if (holder.isTransactionActive) await holder.rollbackTransaction();
        await holder.release();
        await other.destroy();
      },
    };
  };

  it('once the shutdown has begun, no pass starts: a pass queued before it and a pass asked for during it run none', async () => {
    await env.database(kind);
    const app = await env.start({ adapter: 'express', audit: { recoverAfter: 60_000, shutdownTimeout: 10_000 } });
    const recovery = app.app.get(JournalRecovery);
    const first = await holderOf(app);
    const second = await holderOf(app);
    try {
      await deadUnit(app, 1, first.holder);
      const running = recovery.runPass();
      await untilDeleteWaits(app);
      await deadUnit(app, 2, second.holder);
      const queued = recovery.runPass();
      const started = Date.now();
      const closing = env.close(app);
      // Nest calls the shutdown hooks after the module-destroy hooks: wait until recovery's has begun.
      while (!(recovery as unknown as { shuttingDown?: Promise<void> }).shuttingDown) await new Promise((resolve) => setTimeout(resolve, 10));
      const during = recovery.runPass();
      await first.holder.rollbackTransaction(); // the running pass recovers unit 1 and ends
      await Promise.all([running, queued, during, closing]);
      // A pass for unit 2 would have waited for its row until the shutdown's 10 s were over.
      expect(Date.now() - started).toBeLessThan(8_000);
      await expect(recovery.runPass()).resolves.toBeUndefined();
    } finally {
      await first.end();
      await second.end();
    }
    const check = await holderOf(app);
    try {
      const journal = await check.holder.manager.getRepository(AuditJournalEntity).find();
      expect(journal.map((row) => row.unitId)).toEqual(['01900000-0000-7000-8000-0000000e0002']);
      expect(await check.holder.manager.getRepository(AuditLogEntity).count()).toBe(1);
    } finally {
      await check.end();
    }
  }, 60_000);

  // (On MariaDB the data source's pool, closed after the shutdown hooks, waits for the query
  // itself: a row wait is bounded there by innodb_lock_wait_timeout, 50 s by default.)
  it.runIf(kind === 'postgres')('a pass held up by a lock does not hold the shutdown past shutdownTimeout', async () => {
    await env.database(kind);
    const app = await env.start({ adapter: 'express', audit: { recoverAfter: 60_000, shutdownTimeout: 1_000 } });
    const recovery = app.app.get(JournalRecovery);
    const lock = await holderOf(app);
    try {
      await deadUnit(app, 1, lock.holder);
      const running = recovery.runPass().catch((error: Error) => error);
      await untilDeleteWaits(app);
      const started = Date.now();
      await env.close(app);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The pass's transaction went with the data source: rolled back, the row still in the journal.
      await lock.holder.rollbackTransaction();
      await running;
      expect(await lock.holder.manager.getRepository(AuditJournalEntity).count()).toBe(1);
      expect(await lock.holder.manager.getRepository(AuditLogEntity).count()).toBe(0);
    } finally {
      await lock.end();
    }
  }, 60_000);

  it('rows written while a pass is under way are recovered by the pass runPass() returns', async () => {
    await env.database(kind);
    const app = await env.start({ adapter: 'express', audit: { recoverAfter: 60_000 } });
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
