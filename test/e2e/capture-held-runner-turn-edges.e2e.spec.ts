import { describe, expect, it } from 'vitest';
import { Column, Entity, In, PrimaryGeneratedColumn, type EntitySubscriberInterface, type InsertEvent, type QueryRunner, type UpdateEvent } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';
import { refusePoisonedJournalRows } from '../support/refuse-journal.js';

@Entity('hte_item')
class HteItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

/**
 * What the app does on a query runner it holds while the module holds its turn (a write's
 * transaction, or the record of a raw write written on the runner): none of it waits
 * forever, each write is committed and recorded once, and no transaction is left open on
 * the connection. The pool holds one connection.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('the app on a held query runner while the module holds its turn, on %s', (kind) => {
  const h = captureApp(kind, [HteItem], {}, { pool: 1 });
  const items = () => h.ds.getRepository(HteItem);
  const table = () => h.table('hte_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  const inTransaction = () => h.inTransaction();

  /** `fn` on a connected runner of its own, released after; fails after 10 s. */
  const held = async (fn: (runner: QueryRunner) => Promise<unknown>): Promise<void> => {
    const runner = h.ds.createQueryRunner();
    await runner.connect();
    try {
      if ((await within(fn(runner), 10_000)) === 'waited') throw new Error('waited 10 s');
    } finally {
      await within(runner.release(), 10_000);
    }
  };
  const updates = async () => (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HteItem');

  describe.each(MODES)('%s', (mode) => {
    it('a transaction the app starts once a repository update is done, while a raw UPDATE sent before is being recorded: all committed, each recorded once', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: 3 }, () => ({ name: `t${++seq}` }))));
      const run = await h.run(mode, () =>
        held(async (runner) => {
          const raw = runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [seeded[0]!.id]);
          await runner.manager.update(HteItem, { id: seeded[1]!.id }, { n: 1 });
          await runner.startTransaction();
          await runner.query(`UPDATE ${table()} SET n = 3 WHERE id = ${p(1)}`, [seeded[2]!.id]);
          await runner.commitTransaction();
          await raw;
        }),
      );
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(await inTransaction()).toBe(false);
      expect((await items().findBy({ id: In(seeded.map((item) => item.id)) })).map((item) => item.n).sort()).toEqual([1, 2, 3]);
      expect(await updates()).toHaveLength(3);
    });

    it("a transaction the app starts while a repository update's transaction holds the turn, rolled back: its statement undone, the update committed", async () => {
      const [a, b] = await h.t.seed(() => items().save([{ name: `x${++seq}` }, { name: `x${++seq}` }]));
      let outcome: string | undefined;
      const run = await h.run(mode, () =>
        held(async (runner) => {
          const updated = runner.manager.update(HteItem, { id: a!.id }, { n: 1 });
          for (let step = 0; step < 5; step++) await new Promise((resolve) => setImmediate(resolve));
          try {
            await runner.startTransaction();
            await runner.query(`UPDATE ${table()} SET n = 9 WHERE id = ${p(1)}`, [b!.id]);
            await runner.rollbackTransaction();
            outcome = 'rolled back';
          } catch (error) {
            outcome = (error as Error).message;
            if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
          }
          await updated;
        }),
      );
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(outcome).toBe('rolled back');
      expect(await inTransaction()).toBe(false);
      expect((await items().findBy({ id: In([a!.id, b!.id]) })).map((item) => item.n).sort()).toEqual([0, 1]);
    });

    it('release() called twice while a repository update holds the turn: both return once it is done, the update committed and recorded', async () => {
      const [item] = await h.t.seed(() => items().save([{ name: `d${++seq}` }]));
      const run = await h.run(mode, async () => {
        const runner = h.ds.createQueryRunner();
        await runner.connect();
        const updated = runner.manager.update(HteItem, { id: item!.id }, { n: 4 });
        for (let step = 0; step < 3; step++) await new Promise((resolve) => setImmediate(resolve));
        const both = Promise.all([runner.release(), runner.release(), updated]);
        if ((await within(both, 10_000)) === 'waited') throw new Error('waited 10 s');
        expect(runner.isReleased).toBe(true);
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(await inTransaction()).toBe(false);
      expect((await items().findOneByOrFail({ id: item!.id })).n).toBe(4);
      expect(await updates()).toHaveLength(1);
    });

    it.each([
      ['before the update', true],
      ['while the update holds the turn', false],
    ])('a release() of its own the app sets on the runner %s: called once, the connection back in the pool', async (_, first) => {
      const [item] = await h.t.seed(() => items().save([{ name: `o${++seq}` }]));
      let calls = 0;
      let releasedAfter: boolean | undefined;
      const run = await h.run(mode, async () => {
        const runner = h.ds.createQueryRunner();
        await runner.connect();
        const base = runner.release.bind(runner);
        const own = async () => {
          calls++;
          await base();
        };
        if (first) runner.release = own;
        const updated = runner.manager.update(HteItem, { id: item!.id }, { n: 2 });
        for (let step = 0; step < 3; step++) await new Promise((resolve) => setImmediate(resolve));
        if (!first) runner.release = own;
        if ((await within(updated, 10_000)) === 'waited') throw new Error('waited 10 s');
        if ((await within(runner.release(), 10_000)) === 'waited') throw new Error('release waited 10 s');
        releasedAfter = runner.isReleased;
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect({ calls, releasedAfter }).toEqual({ calls: 1, releasedAfter: true });
      expect(await inTransaction()).toBe(false);
      expect(await updates()).toHaveLength(1);
    });

    it("an app subscriber's afterUpdate sending a raw UPDATE on the runner, then awaiting its release: nothing waits, each recorded once", async () => {
      const [a, b] = await h.t.seed(() => items().save([{ name: `s${++seq}` }, { name: `s${++seq}` }]));
      const hooked = new Set<QueryRunner>();
      const subscriber: EntitySubscriberInterface = {
        listenTo: () => HteItem,
        afterUpdate: async (event: UpdateEvent<HteItem>) => {
          const runner = event.queryRunner;
          if (!hooked.delete(runner)) return;
          await runner.query(`UPDATE ${table()} SET n = 6 WHERE id = ${p(1)}`, [b!.id]);
          await runner.release();
        },
      };
      h.ds.subscribers.push(subscriber);
      try {
        const run = await h.run(mode, async () => {
          const runner = h.ds.createQueryRunner();
          await runner.connect();
          hooked.add(runner);
          const raw = runner.query(`UPDATE ${table()} SET n = 7 WHERE id = ${p(1)}`, [a!.id]);
          const updated = runner.manager.update(HteItem, { id: a!.id }, { n: 5 });
          if ((await within(Promise.all([raw, updated]), 10_000)) === 'waited') throw new Error('waited 10 s');
          await runner.release();
        });
        expect(run.error).toBeNull();
        expect(run.status ?? 201).toBe(201);
      } finally {
        h.ds.subscribers.splice(h.ds.subscribers.indexOf(subscriber), 1);
      }
      expect(await inTransaction()).toBe(false);
      expect((await items().findBy({ id: In([a!.id, b!.id]) })).map((item) => item.n).sort()).toEqual([5, 6]);
      expect(await updates()).toHaveLength(3);
    });

    it("an app subscriber's afterInsert of a repository insert sending a raw UPDATE on the runner: nothing waits, each recorded once", async () => {
      const [b] = await h.t.seed(() => items().save([{ name: `a${++seq}` }]));
      const name = `a${++seq}`;
      const hooked = new Set<QueryRunner>();
      const subscriber: EntitySubscriberInterface = {
        listenTo: () => HteItem,
        afterInsert: async (event: InsertEvent<HteItem>) => {
          if (hooked.delete(event.queryRunner)) await event.queryRunner.query(`UPDATE ${table()} SET n = 6 WHERE id = ${p(1)}`, [b!.id]);
        },
      };
      h.ds.subscribers.push(subscriber);
      try {
        const run = await h.run(mode, () =>
          held(async (runner) => {
            hooked.add(runner);
            await Promise.all([runner.manager.insert(HteItem, { name }), runner.query(`UPDATE ${table()} SET n = 7 WHERE id = ${p(1)}`, [b!.id])]);
          }),
        );
        expect(run.error).toBeNull();
        expect(run.status ?? 201).toBe(201);
      } finally {
        h.ds.subscribers.splice(h.ds.subscribers.indexOf(subscriber), 1);
      }
      expect(await inTransaction()).toBe(false);
      expect((await items().findOneByOrFail({ id: b!.id })).n).toBe(6);
      const changes = (await h.changes()).filter((change) => change.entity === 'HteItem');
      expect(changes.map((change) => change.operation).sort()).toEqual(['insert', 'update', 'update']);
    });

    it.each([1, 2])('Promise.all of 20 raw and repository writes on one runner (%s of them at once on the pool): all committed, each recorded once', async (runners) => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: 20 * runners }, () => ({ name: `p${++seq}` }))));
      const run = await h.run(mode, async () => {
        for (let round = 0; round < runners; round++) {
          await held((runner) =>
            Promise.all(
              seeded
                .slice(round * 20, round * 20 + 20)
                .map((item, index) =>
                  index % 2 === 0 ? runner.query(`UPDATE ${table()} SET n = 8 WHERE id = ${p(1)}`, [item.id]) : runner.manager.update(HteItem, { id: item.id }, { n: 9 }),
                ),
            ),
          );
        }
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(await inTransaction()).toBe(false);
      expect(await items().countBy({ id: In(seeded.map((item) => item.id)), n: In([8, 9]) })).toBe(seeded.length);
      expect(await updates()).toHaveLength(seeded.length);
    });
  });

  describe('a raw write whose journal row is refused while a repository update holds the turn', () => {
    it('the runner takes the next statement at once, in no transaction; the write committed and still recorded', async () => {
      await refusePoisonedJournalRows(h.ds, 'hte_refuse');
      const [a, b] = await h.t.seed(() => items().save([{ name: `poison${++seq}` }, { name: `r${++seq}` }]));
      let open: boolean | undefined;
      const run = await h.run('handler', () =>
        held(async (runner) => {
          const raw = runner.query(`UPDATE ${table()} SET n = 2 WHERE name = ${p(1)}`, [a!.name]);
          const updated = runner.manager.update(HteItem, { id: b!.id }, { n: 1 });
          await Promise.all([raw, updated]);
          await runner.query('SELECT 1');
          open = runner.isTransactionActive;
        }),
      );
      expect(run.status).toBe(201);
      expect(open).toBe(false);
      expect(await inTransaction()).toBe(false);
      expect(await updates()).toHaveLength(2);
    });
  });
});
