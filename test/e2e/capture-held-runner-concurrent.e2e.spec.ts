import { describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn, type QueryRunner } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';

@Entity('hr_item')
class HrItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

/**
 * Writes the app sends at once on one query runner it holds, in no transaction (what the
 * database runs one after the other): each is what it is without the module — committed,
 * or failed on its own — and each committed one is recorded once.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('writes at once on one held query runner, on %s', (kind) => {
  const h = captureApp(kind, [HrItem]);
  const items = () => h.ds.getRepository(HrItem);
  const table = () => h.table('hr_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  const held = async <T>(fn: (runner: QueryRunner) => Promise<T>): Promise<T> => {
    const runner = h.ds.createQueryRunner();
    await runner.connect();
    try {
      return await fn(runner);
    } finally {
      await runner.release();
    }
  };
  const bounded = async (work: Promise<unknown>) => {
    if ((await within(work, 10_000)) === 'waited') throw new Error('waited 10 s');
  };
  const outcomes = (settled: PromiseSettledResult<unknown>[]) => settled.map((s) => s.status);

  describe.each(MODES)('%s', (mode) => {
    it('two raw UPDATEs at once: both committed, each recorded', async () => {
      const a = await h.t.seed(() => items().save({ name: `ra${++seq}` }));
      const b = await h.t.seed(() => items().save({ name: `rb${++seq}` }));
      let settled: PromiseSettledResult<unknown>[] = [];
      const run = await h.run(mode, () =>
        bounded(
          held(async (runner) => {
            settled = await Promise.allSettled([
              runner.query(`UPDATE ${table()} SET n = 1 WHERE id = ${p(1)}`, [a.id]),
              runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [b.id]),
            ]);
          }),
        ),
      );
      expect(run.error).toBeNull();
      expect(outcomes(settled)).toEqual(['fulfilled', 'fulfilled']);
      expect((await items().findOneByOrFail({ id: a.id })).n).toBe(1);
      expect((await items().findOneByOrFail({ id: b.id })).n).toBe(2);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrItem');
      expect(updates.length).toBe(2);
    });

    it('repository updates at once on its manager, one failing: the other committed and recorded, as without the module', async () => {
      const a = await h.t.seed(() => items().save({ name: `ua${++seq}` }));
      const b = await h.t.seed(() => items().save({ name: `ub${++seq}` }));
      let settled: PromiseSettledResult<unknown>[] = [];
      await h.run(mode, () =>
        bounded(
          held(async (runner) => {
            settled = await Promise.allSettled([runner.manager.update(HrItem, { id: a.id }, { n: 5 }), runner.manager.update(HrItem, { id: b.id }, { name: a.name })]);
          }),
        ),
      );
      expect(outcomes(settled)).toEqual(['fulfilled', 'rejected']);
      expect((await items().findOneByOrFail({ id: a.id })).n).toBe(5);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrItem' && change.id === String(a.id));
      expect(updates).toHaveLength(1);
      expect(updates[0]).toMatchObject({ fields: { n: { from: 0, to: 5 } } });
    });

    it('a failing repository update and a raw UPDATE at once: the raw one committed and recorded, as without the module', async () => {
      const a = await h.t.seed(() => items().save({ name: `wa${++seq}` }));
      const b = await h.t.seed(() => items().save({ name: `wb${++seq}` }));
      let settled: PromiseSettledResult<unknown>[] = [];
      await h.run(mode, () =>
        bounded(
          held(async (runner) => {
            settled = await Promise.allSettled([
              runner.manager.update(HrItem, { id: b.id }, { name: a.name }),
              runner.query(`UPDATE ${table()} SET n = 8 WHERE id = ${p(1)}`, [a.id]),
            ]);
          }),
        ),
      );
      expect(outcomes(settled)).toEqual(['rejected', 'fulfilled']);
      expect((await items().findOneByOrFail({ id: a.id })).n).toBe(8);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrItem');
      expect(updates).toHaveLength(1);
    });

    it('repository updates at once on its manager: both committed, each recorded once', async () => {
      const a = await h.t.seed(() => items().save({ name: `va${++seq}` }));
      const b = await h.t.seed(() => items().save({ name: `vb${++seq}` }));
      let settled: PromiseSettledResult<unknown>[] = [];
      await h.run(mode, () =>
        bounded(
          held(async (runner) => {
            settled = await Promise.allSettled([runner.manager.update(HrItem, { id: a.id }, { n: 6 }), runner.manager.update(HrItem, { id: b.id }, { n: 7 })]);
          }),
        ),
      );
      expect(outcomes(settled)).toEqual(['fulfilled', 'fulfilled']);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrItem');
      expect(updates.map((u) => u.id).sort()).toEqual([String(a.id), String(b.id)].sort());
    });
  });
});
