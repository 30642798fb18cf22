import { describe, expect, it } from 'vitest';
import {
  Column,
  Entity,
  In,
  PrimaryGeneratedColumn,
  QueryRunnerAlreadyReleasedError,
  type EntitySubscriberInterface,
  type QueryRunner,
  type TransactionCommitEvent,
} from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';

@Entity('hrr_item')
class HrrItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

const ROUNDS = 16;

/**
 * An app that releases a query runner it holds without waiting for a write it sent on it
 * (outside any transaction): the write is what it is without the module, recorded once,
 * nothing hangs, and the connection goes back to the pool with no transaction of the
 * module's open on it. The pool holds one connection: the next runner gets the same one.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('a held query runner released before its write is done, on %s', (kind) => {
  const h = captureApp(kind, [HrrItem], {}, { pool: 1 });
  const items = () => h.ds.getRepository(HrrItem);
  const table = () => h.table('hrr_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  const inTransaction = () => h.inTransaction();

  /**
   * `send` on a connected runner of its own, then `release()` after `wait(round)`, for each
   * round (10 s at most in all): what each write gave, and whether the connection was in a
   * transaction after each release.
   */
  const rounds = async (send: (runner: QueryRunner, round: number) => Promise<unknown>, wait: (round: number) => Promise<void>) => {
    const outcomes: string[] = [];
    const open: boolean[] = [];
    const run = await within(
      (async () => {
        for (let round = 0; round < ROUNDS; round++) {
          const runner = h.ds.createQueryRunner();
          await runner.connect();
          const sent = send(runner, round);
          try {
            await wait(round);
          } finally {
            await runner.release();
          }
          const [outcome] = await Promise.allSettled([sent]);
          outcomes.push(outcome.status === 'fulfilled' ? 'ok' : String((outcome.reason as Error).message));
          open.push(await inTransaction());
        }
      })(),
      10_000,
    );
    if (run === 'waited') throw new Error('waited 10 s');
    return { outcomes, open };
  };
  const turnsOfTheEventLoop = async (count: number) => {
    for (let turn = 0; turn < count; turn++) await new Promise((resolve) => setImmediate(resolve));
  };

  describe.each(MODES)('%s', (mode) => {
    it('a repository update, released 0 to 15 turns of the event loop after: each committed and recorded once, no transaction left open', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: ROUNDS }, () => ({ name: `w${++seq}` }))));
      let result: Awaited<ReturnType<typeof rounds>> | undefined;
      const run = await h.run(mode, async () => {
        result = await rounds((runner, round) => runner.manager.update(HrrItem, { id: seeded[round]!.id }, { n: 3 }), turnsOfTheEventLoop);
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      // Released in the same turn, before the update could send anything: TypeORM's error, nothing written.
      expect(['ok', new QueryRunnerAlreadyReleasedError().message]).toContain(result?.outcomes[0]);
      expect(result?.outcomes.slice(1)).toEqual(Array(ROUNDS - 1).fill('ok'));
      expect(result?.open).toEqual(Array(ROUNDS).fill(false));
      const committed = seeded.filter((_, round) => result?.outcomes[round] === 'ok').map((item) => String(item.id));
      expect((await items().findBy({ id: In(seeded.map((item) => item.id)), n: 3 })).map((item) => String(item.id)).sort()).toEqual(committed.sort());
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrrItem');
      expect(updates.map((change) => change.id).sort()).toEqual(committed.sort());
    });

    it('a raw UPDATE, released 0 to 15 turns of the event loop after: each committed and recorded once', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: ROUNDS }, () => ({ name: `r${++seq}` }))));
      let result: Awaited<ReturnType<typeof rounds>> | undefined;
      const run = await h.run(mode, async () => {
        result = await rounds((runner, round) => runner.query(`UPDATE ${table()} SET n = 7 WHERE id = ${p(1)}`, [seeded[round]!.id]), turnsOfTheEventLoop);
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(result?.outcomes).toEqual(Array(ROUNDS).fill('ok'));
      expect(result?.open).toEqual(Array(ROUNDS).fill(false));
      expect(await items().countBy({ id: In(seeded.map((item) => item.id)), n: 7 })).toBe(ROUNDS);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrrItem');
      expect(updates).toHaveLength(ROUNDS);
    });

    it('a raw UPDATE not awaited and a repository update awaited, released 0 to 15 steps after: each committed and recorded once', async () => {
      const seeded = await h.t.seed(() => items().save(Array.from({ length: ROUNDS * 2 }, () => ({ name: `s${++seq}` }))));
      const updated: Array<Promise<unknown>> = [];
      let result: Awaited<ReturnType<typeof rounds>> | undefined;
      const run = await h.run(mode, async () => {
        result = await rounds(
          (runner, round) => {
            const sent = runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [seeded[round * 2]!.id]);
            updated[round] = runner.manager.update(HrrItem, { id: seeded[round * 2 + 1]!.id }, { n: 1 });
            return sent;
          },
          async (round) => {
            await updated[round];
            for (let step = 0; step < round; step++) await Promise.resolve();
          },
        );
      });
      expect(run.error).toBeNull();
      expect(run.status ?? 201).toBe(201);
      expect(result?.outcomes).toEqual(Array(ROUNDS).fill('ok'));
      expect(result?.open).toEqual(Array(ROUNDS).fill(false));
      expect(await items().countBy({ id: In(seeded.map((item) => item.id)), n: In([1, 2]) })).toBe(ROUNDS * 2);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrrItem');
      expect(updates).toHaveLength(ROUNDS * 2);
    });

    it("a subscriber releasing the runner once the update's transaction has committed: released at once, the update committed and recorded", async () => {
      const [item] = await h.t.seed(() => items().save([{ name: `h${++seq}` }]));
      const releasing = new Set<QueryRunner>();
      const subscriber: EntitySubscriberInterface = {
        afterTransactionCommit: async (event: TransactionCommitEvent) => {
          if (releasing.delete(event.queryRunner)) await event.queryRunner.release();
        },
      };
      h.ds.subscribers.push(subscriber);
      let updated: string | undefined;
      let later: string | undefined;
      try {
        const run = await h.run(mode, async () => {
          const runner = h.ds.createQueryRunner();
          await runner.connect();
          releasing.add(runner);
          const work = runner.manager.update(HrrItem, { id: item!.id }, { n: 5 }).then(
            () => 'ok',
            (error: Error) => error.message,
          );
          const outcome = await within(work, 10_000);
          if (outcome === 'waited') throw new Error('waited 10 s');
          updated = outcome;
          later = await runner.query('SELECT 1').then(
            () => 'ok',
            (error: Error) => error.constructor.name,
          );
          await runner.release();
        });
        expect(run.error).toBeNull();
      } finally {
        h.ds.subscribers.splice(h.ds.subscribers.indexOf(subscriber), 1);
      }
      expect(updated).toBe('ok');
      expect(later).toBe('QueryRunnerAlreadyReleasedError');
      expect((await items().findOneByOrFail({ id: item!.id })).n).toBe(5);
      const updates = (await h.changes()).filter((change) => change.operation === 'update' && change.entity === 'HrrItem');
      expect(updates.map((change) => change.id)).toEqual([String(item!.id)]);
    });
  });
});
