// The integrator's batch when another transaction holds one of the rows it sequences: the
// batch waits for the row as long as it may wait for the integrator's lock (on MySQL/MariaDB
// too, where the row wait was the server's innodb_lock_wait_timeout, 50 s by default), then
// fails as a race it lost — not as "another instance held the integrator lock" — and is
// tried again; the connection goes back to the pool with its own lock wait.
import { generateKeyPairSync } from 'node:crypto';
import { DataSource, IsNull, type DataSourceOptions } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { storeEventsAt } from '../support/partitions.js';
import { expectWholeTree } from '../support/sequenced-log.js';
import { databases } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';

const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: 'audit.example.test/row-locks', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };

describe.each(databases().filter((kind) => kind !== 'sqlite'))('integrator: a row of the batch held by another transaction, on %s', (kind) => {
  const env = appsPerTest();

  it('the batch waits as long as it may, fails as a lost race, and is stored once the row is free', async () => {
    const db = await env.database(kind);
    // One connection: the one the batch used is the one asked for its lock wait afterwards.
    db.options = { ...db.options, extra: kind === 'postgres' ? { max: 1 } : { connectionLimit: 1 } } as DataSourceOptions;
    const app = await env.start({ adapter: 'express', audit: INTEGRITY });
    const lockWait = async (): Promise<string> => {
      const [row] = await app.dataSource.query(kind === 'postgres' ? 'SHOW lock_timeout' : 'SELECT @@SESSION.innodb_lock_wait_timeout AS lock_timeout');
      return String(row.lock_timeout);
    };
    const before = await lockWait();
    const ids = await storeEventsAt(app, new Date(Date.now() - 60_000), 50, 'r');

    const other = new DataSource({ ...(db.options as DataSourceOptions), extra: undefined, entities: [AuditLogEntity] } as DataSourceOptions);
    await other.initialize();
    const holder = other.createQueryRunner();
    try {
      await holder.connect();
      await holder.startTransaction();
      await holder.manager.getRepository(AuditLogEntity).createQueryBuilder('e').setLock('pessimistic_write').where('e.id = :id', { id: ids[10] }).getOne();

      const started = Date.now();
      const outcome = await app.app.get(AuditIntegrator).batch(2_000, false);
      const elapsed = Date.now() - started;

      expect(outcome.busy).toBe(true);
      expect(outcome.lostRace?.message).toMatch(/lock/i);
      expect(elapsed).toBeGreaterThanOrEqual(1_500);
      expect(elapsed).toBeLessThan(6_000);
      expect(await lockWait()).toBe(before);
      expect(await app.dataSource.getRepository(AuditLogEntity).countBy({ seq: IsNull() })).toBe(50);
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
      await other.destroy();
    }
    expect((await app.audit.checkpoint()).treeSize).toBe(50);
    await expectWholeTree(app, 50);
  }, 60_000);
});
