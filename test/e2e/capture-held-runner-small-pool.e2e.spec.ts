import { describe, expect, it } from 'vitest';
import { Column, Entity, In, PrimaryGeneratedColumn, type QueryRunner } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';

@Entity('hsp_item')
class HspItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

const POOL = 2;

/**
 * Query runners the app holds, as many as the pool has connections, each sending a raw
 * write while a write the module opened a transaction for holds its turn: the raw write's
 * record is written without waiting for a connection of the pool (every one is held), and
 * each write is committed and recorded once.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('raw writes on held query runners filling the pool, on %s', (kind) => {
  const h = captureApp(kind, [HspItem], {}, { pool: POOL });
  const items = () => h.ds.getRepository(HspItem);
  const table = () => h.table('hsp_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  /**
   * `fn` on a runner of its own, connected, for each of `count` at once (every connection of
   * the pool held); fails after 10 s, the runners released then (the pool free again).
   */
  const heldAtOnce = async (count: number, fn: (runner: QueryRunner, index: number) => Promise<unknown>): Promise<void> => {
    const runners = Array.from({ length: count }, () => h.ds.createQueryRunner());
    await Promise.all(runners.map((runner) => runner.connect()));
    try {
      if ((await within(Promise.all(runners.map((runner, index) => fn(runner, index))), 10_000)) === 'waited') throw new Error('waited 10 s');
    } finally {
      await Promise.all(runners.map((runner) => runner.release()));
    }
  };

  describe.each(MODES)('%s', (mode) => {
    it('a repository update and a raw UPDATE at once on each runner: all committed, each recorded once', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: POOL * 2 }, () => ({ name: `i${++seq}` }))));
      const outcomes: string[] = [];
      const run = await h.run(mode, () =>
        heldAtOnce(POOL, async (runner, index) => {
          const [a, b] = [seeded[index * 2]!, seeded[index * 2 + 1]!];
          const settled = await Promise.allSettled([runner.manager.update(HspItem, { id: a.id }, { n: 1 }), runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [b.id])]);
          outcomes.push(...settled.map((s) => s.status));
        }),
      );
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(outcomes).toEqual(Array(POOL * 2).fill('fulfilled'));
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HspItem');
      expect(updates).toHaveLength(POOL * 2);
    });

    it('a raw INSERT sent between two repository updates on each runner: all committed, each recorded once', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: POOL * 2 }, () => ({ name: `j${++seq}` }))));
      const inserted = Array.from({ length: POOL }, () => `k${++seq}`);
      const outcomes: string[] = [];
      const run = await h.run(mode, () =>
        heldAtOnce(POOL, async (runner, index) => {
          const [a, b] = [seeded[index * 2]!, seeded[index * 2 + 1]!];
          const settled = await Promise.allSettled([
            runner.manager.update(HspItem, { id: a.id }, { n: 3 }),
            runner.query(`INSERT INTO ${table()} (name, n) VALUES (${p(1)}, 4)`, [inserted[index]]),
            runner.manager.update(HspItem, { id: b.id }, { n: 5 }),
          ]);
          outcomes.push(...settled.map((s) => s.status));
        }),
      );
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(outcomes).toEqual(Array(POOL * 3).fill('fulfilled'));
      expect(await items().countBy({ name: In(inserted) })).toBe(POOL);
      const changes = (await h.changes()).filter((change) => change.entity === 'HspItem');
      expect(changes.filter((change) => change.operation === 'update').map((change) => change.id).sort()).toEqual(seeded.map((item) => String(item.id)).sort());
      expect(changes.filter((change) => change.operation === 'insert')).toHaveLength(POOL);
    });
  });
});
