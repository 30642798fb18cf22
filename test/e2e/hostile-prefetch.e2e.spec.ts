// The integrator's read-ahead (the next batch's events read and hashed while a batch's
// statements run) against a pool of one connection, a data source destroyed mid-read,
// stale read-aheads, late events with smaller ids, three instances at once, and
// PostgreSQL running every transaction SERIALIZABLE.
import { generateKeyPairSync } from 'node:crypto';
import pg from 'pg';
import { IsNull } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { advisoryLockKey } from '../../lib/integrity/integrator-lock.js';
import type { TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { storeEventsAt } from '../support/partitions.js';
import { expectWholeTree } from '../support/sequenced-log.js';
import { databases, withPostgresSettings } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';

const { privateKey } = generateKeyPairSync('ed25519');
const integrity = (sequenceEvery = 60_000): AuditModuleOptions => ({
  integrity: { signingKey: privateKey, origin: 'audit.example.test/hostile-prefetch', sequenceEvery, checkpointEvery: { events: 1_000_000 } },
});
const prefetchOf = (integrator: AuditIntegrator): Promise<unknown> | undefined =>
  (integrator as unknown as { prefetched?: { read: Promise<unknown> } }).prefetched?.read;

const KINDS = databases().filter((kind) => kind !== 'sqlite');

describe.each(KINDS)('hostile: integrator read-ahead on %s', (kind) => {
  const env = appsPerTest();

  const start = async (audit = integrity()): Promise<TestApp> => {
    return env.start({ adapter: 'express', audit });
  };


  it('pool of one connection: checkpoint() of a 5,500-event backlog completes', async () => {
    const db = await env.database(kind);
    db.options = { ...db.options, extra: kind === 'postgres' ? { max: 1 } : { connectionLimit: 1 } } as typeof db.options;
    const t = await start();
    await storeEventsAt(t, new Date(Date.now() - 60_000), 5_500, 'p');
    const checkpoint = await Promise.race([t.audit.checkpoint(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('checkpoint() hung')), 40_000).unref())]);
    expect(checkpoint.treeSize).toBe(5_500);
    expect(t.app.get(AuditIntegrator).stats.prefetched).toBe(2);
    await expectWholeTree(t, 5_500);
  }, 90_000);

  it('app closed while a read-ahead is in flight: no unhandled rejection, close does not hang', async () => {
    await env.database(kind);
    const t = await start();
    await storeEventsAt(t, new Date(Date.now() - 60_000), 4_500, 'c');
    const integrator = t.app.get(AuditIntegrator);
    await integrator.batch(0, false);
    const inFlight = prefetchOf(integrator);
    expect(inFlight).toBeDefined();
    await t.dataSource.destroy();
    // It settles, never rejects: the hashed events, or nothing when the destroy came first
    // (a busy machine), which the next batch reads again in its own transaction.
    await expect(inFlight!.then(() => 'settled')).resolves.toBe('settled');
    // A batch after the destroy.
    await integrator.batch(0, false).catch(() => undefined);
    const closed = await Promise.race([env.close(t).then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('hung'), 20_000).unref())]);
    expect(closed).toBe('closed');
  }, 90_000);

  it('stale read-ahead kept after a busy batch, late events with smaller ids, another instance sequencing part: one gapless tree', async () => {
    await env.database(kind);
    const a = await start();
    const b = await start();
    await storeEventsAt(a, new Date(Date.now() - 60_000), 4_500, 'r');
    const integrator = a.app.get(AuditIntegrator);
    expect(await integrator.batch(0, false)).toMatchObject({ busy: false, sequenced: 2_000 });
    await prefetchOf(integrator);
    // Late events with smaller ids (inside and after the read-ahead's id range).
    await storeEventsAt(a, new Date(Date.now() - 59_000), 300, 'late1');
    await storeEventsAt(a, new Date(Date.now() - 120_000), 300, 'late0');
    // The other instance does one batch from the start.
    expect(await b.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ busy: false });
    const stale = await integrator.batch(0, false);
    expect(stale.busy || stale.sequenced > 0).toBe(true);
    const checkpoint = await a.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(5_100);
    await expectWholeTree(a, 5_100);
  }, 120_000);

  it('three instances ticking every 20 ms while events are written (some late, with smaller ids): one gapless tree', async () => {
    await env.database(kind);
    const a = await start(integrity(20));
    const b = await start(integrity(20));
    const c = await start(integrity(20));
    const all = [a, b, c];
    let total = 0;
    const deadline = Date.now() + 15_000;
    for (let round = 0; round < 6 && Date.now() < deadline; round++) {
      await Promise.all([
        storeEventsAt(all[round % 3]!, new Date(Date.now() - 10_000 + round), 2_500, `w${round}`),
        storeEventsAt(all[(round + 1) % 3]!, new Date(Date.now() - 3_600_000 - round * 60_000), 700, `l${round}`),
        all[(round + 2) % 3]!.audit.checkpoint().catch(() => undefined),
      ]);
      total += 3_200;
    }
    await b.audit.checkpoint();
    const checkpoint = await a.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(total);
    await expectWholeTree(a, total);
  }, 180_000);
});

// PostgreSQL with default_transaction_isolation = serializable: a serializable read-ahead
// beside the batch's transaction, which writes audit_log, made PostgreSQL abort the batch
// (40001) while the app stored events; every full batch started a read-ahead, so a backlog of
// 2,000 events or more was never sequenced while the app wrote. The read-ahead now runs READ
// COMMITTED, and a batch that loses such a race is tried again (checkpoint() too).
describe.skipIf(!databases().includes('postgres'))('hostile: integrator batches that lose races on PostgreSQL (SERIALIZABLE, a deadlock)', () => {
  const env = appsPerTest();

  /** An app on a schema whose every transaction is SERIALIZABLE by default, with `backlog` events stored. */
  const serializableApp = async (sequenceEvery: number | undefined, backlog: number, label: string): Promise<TestApp> => {
    withPostgresSettings(await env.database('postgres'), '-c default_transaction_isolation=serializable');
    const app = await env.start({ adapter: 'express', audit: integrity(sequenceEvery) });
    await storeEventsAt(app, new Date(Date.now() - 600_000), backlog, label);
    return app;
  };

  /**
   * Stores 3 events at a time until `work` settles, then returns its result and the events
   * stored meanwhile. A store the database aborts under SERIALIZABLE stores nothing and is
   * not what these tests are about: it is only not counted.
   */
  const whileStoring = async <T>(app: TestApp, label: string, work: () => Promise<T>): Promise<{ result: T; stored: number }> => {
    let writing = true;
    let stored = 0;
    const writer = (async () => {
      for (let i = 0; writing && i < 5_000; i++) {
        if (await storeEventsAt(app, new Date(), 3, `${label}${i}`).then(() => true, () => false)) stored += 3;
      }
    })();
    let result: T;
    try {
      result = await work();
    } finally {
      writing = false;
      await writer;
    }
    return { result, stored };
  };

  it('checkpoint() of a backlog with nothing else running: no batch fails with a serialization failure', async () => {
    const app = await serializableApp(undefined, 10_000, 'q');
    const failures: string[] = [];
    for (let round = 0; round < 3; round++) {
      await storeEventsAt(app, new Date(Date.now() - 500_000 + round * 10_000), 6_000, `q${round}`);
      await app.audit.checkpoint().catch((error: Error) => failures.push(error.message));
    }
    expect(failures).toEqual([]);
    expect((await app.audit.checkpoint()).treeSize).toBe(28_000);
  }, 180_000);

  it('timed passes (every 50 ms) while the app keeps storing events: a 6,000-event backlog is sequenced within 10 s', async () => {
    const app = await serializableApp(50, 6_000, 'k');
    // The probe reads in a READ COMMITTED transaction: as a serializable one, it could itself be aborted.
    const unsequenced = () => app.dataSource.transaction('READ COMMITTED', (manager) => manager.getRepository(AuditLogEntity).count({ where: { seq: IsNull() } }));
    const { result: left } = await whileStoring(app, 'kw', async () => {
      const deadline = Date.now() + 10_000;
      let count = await unsequenced();
      while (Date.now() < deadline && count >= 2_000) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        count = await unsequenced();
      }
      return count;
    });
    expect(left).toBeLessThan(2_000);
  }, 60_000);

  it('checkpoint() while the app keeps storing events: a batch that loses a race is tried again, checkpoint() does not fail', async () => {
    const app = await serializableApp(undefined, 6_000, 'm');
    const failures: string[] = [];
    const { stored } = await whileStoring(app, 'mw', async () => {
      for (let round = 0; round < 4; round++) await app.audit.checkpoint().catch((error: Error) => failures.push(error.message));
    });
    expect(failures).toEqual([]);
    expect((await app.audit.checkpoint()).treeSize).toBe(6_000 + stored);
  }, 120_000);

  // A batch that PostgreSQL aborts as a deadlock victim: another session holds a row of the
  // batch and then waits for the integrator's advisory lock. checkpoint() tries the batch
  // again once the other session is gone, instead of failing.
  it('a deadlock with another session: the batch is tried again, checkpoint() covers every event', async () => {
    const db = await env.database('postgres');
    const app = await env.start({ adapter: 'express', audit: integrity() });
    const ids = await storeEventsAt(app, new Date(Date.now() - 60_000), 100, 'd');
    const table = `"${(db.options as { schema: string }).schema}"."audit_log"`;
    const other = new pg.Client(POSTGRES);
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${table} WHERE id = $1 FOR UPDATE`, [ids[50]]);
      const checkpoint = app.audit.checkpoint();
      // Once the batch's UPDATE waits for that row, this session waits for the batch's lock.
      const deadline = Date.now() + 20_000;
      for (;;) {
        // (Asked on another connection: inside this session's transaction, pg_stat_activity keeps its first snapshot.)
        const [row] = await app.dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [`UPDATE ${table}%`]);
        if (row.n > 0) break;
        if (Date.now() > deadline) throw new Error("the batch's UPDATE never waited for the locked row");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const waitForLock = other.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey(app.dataSource)]);
      const deadlockVictim = await waitForLock.then(
        () => 'the batch',
        (error: Error) => `this session: ${error.message}`,
      );
      expect(deadlockVictim).toBe('the batch');
      await other.query('ROLLBACK');
      expect((await checkpoint).treeSize).toBe(100);
    } finally {
      await other.end();
    }
    expect(await app.dataSource.getRepository(AuditLogEntity).count({ where: { seq: IsNull() } })).toBe(0);
  }, 60_000);
});
