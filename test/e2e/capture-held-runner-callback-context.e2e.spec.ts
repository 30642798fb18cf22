import { describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';

@Entity('hcc_item')
class HccItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

/**
 * Whose a statement on a held query runner is (the write holding the runner's turn, or
 * the app's) is told by the code sending it, not by where the driver reports its end: with
 * TypeORM 0.3, mysql2 calls back in the context its connection was opened in (another
 * request's, or none), where the module hears the end of a raw write. A raw write the app
 * sent before a failing write opened its transaction stays committed and recorded once;
 * nothing waits for a turn it holds itself.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('statements on a held query runner whose driver calls back elsewhere, on %s', (kind) => {
  const h = captureApp(kind, [HccItem]);
  const items = () => h.ds.getRepository(HccItem);
  const table = () => h.table('hcc_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  describe.each(MODES)('%s', (mode) => {
    it('a runner first used by a repository update, then a raw UPDATE and a failing update at once: the raw one committed and recorded once', async () => {
      const [a, b, c] = await h.t.seed(() => items().save([{ name: `a${++seq}` }, { name: `b${++seq}` }, { name: `c${++seq}` }]));
      let settled: string[] = [];
      const run = await h.run(mode, async () => {
        const work = (async () => {
          // Not connected: the update's transaction takes its connection from the pool.
          const runner = h.ds.createQueryRunner();
          try {
            await runner.manager.update(HccItem, { id: a!.id }, { n: 1 });
            const outcomes = await Promise.allSettled([
              runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [b!.id]),
              runner.manager.update(HccItem, { id: c!.id }, { name: a!.name }),
            ]);
            await runner.query(`UPDATE ${table()} SET n = 3 WHERE id = ${p(1)}`, [c!.id]);
            settled = outcomes.map((outcome) => outcome.status);
          } finally {
            await runner.release();
          }
        })();
        if ((await within(work, 10_000)) === 'waited') throw new Error('waited 10 s');
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(settled).toEqual(['fulfilled', 'rejected']);
      expect((await items().findBy({})).filter((item) => [a!.id, b!.id, c!.id].includes(item.id)).map((item) => [item.name === a!.name, item.n])).toEqual([
        [true, 1],
        [false, 2],
        [false, 3],
      ]);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HccItem');
      // The repository update of `a` (with its id) and the two raw ones (without).
      expect(updates.filter((change) => change.id === String(a!.id))).toHaveLength(1);
      expect(updates.filter((change) => change.id === null)).toHaveLength(2);
      expect(updates).toHaveLength(3);
    });
  });
});
