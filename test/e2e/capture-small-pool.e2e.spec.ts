import { Controller, Param, Post } from '@nestjs/common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn, type DataSource } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { within } from '../support/within.js';

@Entity('sp_counter')
class SpCounter {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

let dataSource: DataSource;

/** The writes each request makes, by name. */
const WRITES: Record<string, (id: number) => Promise<unknown>> = {
  transaction: (id) => dataSource.transaction((manager) => manager.increment(SpCounter, { id }, 'n', 1)),
  update: (id) => dataSource.getRepository(SpCounter).update({ id }, { name: `u${id}` }),
  insert: (id) => dataSource.getRepository(SpCounter).insert({ name: `i${id}`, n: 0 }),
  'save without transaction': async (id) => {
    const counter = await dataSource.getRepository(SpCounter).findOneByOrFail({ id });
    counter.n += 1;
    return dataSource.getRepository(SpCounter).save(counter, { transaction: false });
  },
  'raw SQL': (id) =>
    dataSource.query(
      dataSource.options.type === 'postgres'
        ? `UPDATE "${(dataSource.options as { schema: string }).schema}".sp_counter SET n = n + 1 WHERE id = $1`
        : 'UPDATE sp_counter SET n = n + 1 WHERE id = ?',
      [id],
    ),
};

@Controller('pool')
class PoolController {
  @Post(':write/:id')
  @Audited('pool.write')
  async write(@Param('write') write: string, @Param('id') id: string): Promise<{ ok: true }> {
    await WRITES[write]!(Number(id));
    return { ok: true };
  }
}

const CONCURRENT = 6;
const BOUND_MS = 20_000;

/**
 * An app whose pool holds two connections: requests that each write through one of them,
 * more at once than the pool holds, all complete — the module never holds a request's
 * connection while it waits for another from the same pool — and each is recorded.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('audited writes with a pool of two connections, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    db.options = { ...db.options, extra: kind === 'postgres' ? { max: 2 } : { connectionLimit: 2 } } as typeof db.options;
    t = await createTestApp({ db, adapter: 'express', entities: [SpCounter], controllers: [PoolController] });
    dataSource = t.dataSource;
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const bounded = <T>(work: Promise<T>) => within(work, BOUND_MS);
  const seedCounters = () => t.seed(() => dataSource.getRepository(SpCounter).save(Array.from({ length: CONCURRENT }, (_, i) => ({ name: `c${i}`, n: 0 }))));

  it.each(Object.keys(WRITES))('%s: concurrent @Audited requests complete and are each recorded', async (write) => {
    const counters = await seedCounters();
    const requests = Promise.all(counters.map((counter) => t.request(`/pool/${encodeURIComponent(write)}/${counter.id}`, { method: 'POST' }).then((response) => response.status)));
    expect(await bounded(requests)).toEqual(Array(CONCURRENT).fill(201));
    const rows = await t.rows();
    expect(rows.filter((row) => row.action === 'pool.write' && row.outcome === 'success')).toHaveLength(CONCURRENT);
    for (const row of rows) expect(row.changes?.filter((change) => change.entity === 'SpCounter')).toHaveLength(1);
  }, BOUND_MS + 10_000);

  it.each(Object.keys(WRITES))('%s: concurrent writes outside any unit of work complete and are each recorded in a fallback event', async (write) => {
    const counters = await seedCounters();
    const writes = Promise.all(counters.map((counter) => WRITES[write]!(counter.id).then(() => 'done')));
    expect(await bounded(writes)).toEqual(Array(CONCURRENT).fill('done'));
    const rows = await t.rows();
    expect(rows).toHaveLength(CONCURRENT);
    for (const row of rows) {
      expect(row).toMatchObject({ kind: 'change', outcome: 'success' });
      expect(row.changes?.filter((change) => change.entity === 'SpCounter')).toHaveLength(1);
    }
  }, BOUND_MS + 10_000);
});
