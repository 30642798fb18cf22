import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Column, DataSource, DeleteDateColumn, Entity, PrimaryGeneratedColumn, type ObjectLiteral } from 'typeorm';
import { databases } from '../support/test-database.js';
import { captureApp } from '../app/capture-harness.js';

@Entity('wr_audited')
class WrAudited {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
}

@Entity('wr_plain')
class WrPlain {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
}

type Target = typeof WrAudited | typeof WrPlain;

/** The same writes, in the same order, on a fresh table of each data source. */
const WRITES: Array<[string, (ds: DataSource, target: Target) => Promise<unknown>]> = [
  ['insert()', (ds, t) => ds.getRepository(t).insert({ name: 'a', n: 1 })],
  ['insert() of two', (ds, t) => ds.getRepository(t).insert([{ name: 'b' }, { name: 'c', n: 2 }])],
  ['update()', (ds, t) => ds.getRepository(t).update({ name: 'a' }, { n: 5 })],
  ['update() of none', (ds, t) => ds.getRepository(t).update({ name: 'none' }, { n: 5 })],
  ['query builder update', (ds, t) => ds.createQueryBuilder().update(t).set({ n: 3 }).where('n < :n', { n: 3 }).execute()],
  ['softDelete()', (ds, t) => ds.getRepository(t).softDelete({ name: 'b' })],
  ['restore()', (ds, t) => ds.getRepository(t).restore({ name: 'b' })],
  ['upsert()', (ds, t) => ds.getRepository(t).upsert([{ name: 'c', n: 9 }, { name: 'd', n: 1 }], ['name'])],
  ['delete()', (ds, t) => ds.getRepository(t).delete({ name: 'a' })],
  ['delete() of none', (ds, t) => ds.getRepository(t).delete({ name: 'none' })],
];

/** What the app can compare: the result, with the dates the database set masked. */
const comparable = (result: unknown): unknown =>
  JSON.parse(JSON.stringify(result, (_key, value: unknown) => (typeof value === 'string' && /^\d{4}-\d\d-\d\dT/.test(value) ? '<date>' : value))) as ObjectLiteral;

/**
 * The results of `repository.insert()`, `update()`, `delete()`, `softDelete()`,
 * `restore()`, `upsert()` run in no transaction — which the module runs in one of its own
 * — are those the same writes give without the module.
 */
describe.each(databases())('results of query builder writes, with and without the module, on %s', (kind) => {
  const h = captureApp(kind, [WrAudited]);
  let plain: DataSource;
  beforeAll(async () => {
    plain = new DataSource({ ...h.db.options, entities: [WrPlain], synchronize: true } as ConstructorParameters<typeof DataSource>[0]);
    await plain.initialize();
  });
  afterAll(async () => {
    await plain?.query(kind === 'postgres' ? `DROP TABLE IF EXISTS "${(plain.options as { schema: string }).schema}".wr_plain` : 'DROP TABLE IF EXISTS wr_plain').catch(() => undefined);
    await plain?.destroy();
  });

  it('each result is as without the module', async () => {
    const differ: unknown[] = [];
    for (const [name, write] of WRITES) {
      const without = comparable(await write(plain, WrPlain));
      const withModule = comparable(await write(h.ds, WrAudited));
      if (JSON.stringify(withModule) !== JSON.stringify(without)) differ.push({ name, withModule, without });
    }
    expect(differ).toEqual([]);
  });
});
