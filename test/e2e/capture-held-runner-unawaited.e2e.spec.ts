import { describe, expect, it } from 'vitest';
import { Column, Entity, In, PrimaryGeneratedColumn } from 'typeorm';
import { AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { databases } from '../support/test-database.js';
import { captureApp } from '../app/capture-harness.js';
import { within } from '../support/within.js';

@Entity('hru_item')
class HruItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) name!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

const ROUNDS = 8;

/**
 * A request sending a raw write on a query runner it holds without waiting for it, beside a
 * repository write on that runner: the raw write's journal row waits for the runner's
 * turn. Each change is recorded once: no journal row is left behind the request's events
 * (one left would be stored again by the recovery of this instance's rows).
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('a raw write not awaited on a held query runner, on %s', (kind) => {
  const h = captureApp(kind, [HruItem], {}, { pool: 2 });
  const items = () => h.ds.getRepository(HruItem);
  const journal = () => h.ds.getRepository(AuditJournalEntity);
  const table = () => h.table('hru_item');
  const p = (n: number) => h.param(n);
  let seq = 0;

  it.each([
    ['the repository update awaited', true],
    ['nothing awaited', false],
  ])('a raw UPDATE not awaited, %s, the runner released in a finally: each change recorded once, no journal row left', async (_, awaitUpdate) => {
    const seeded = await h.t.seed(() => items().save(Array.from({ length: ROUNDS * 2 }, () => ({ name: `u${++seq}` }))));
    const sent: Array<Promise<string>> = [];
    const settle = (work: Promise<unknown>) => work.then(
      () => 'ok',
      (error: Error) => error.constructor.name,
    );
    for (let round = 0; round < ROUNDS; round++) {
      const run = await h.run('handler', async () => {
        const runner = h.ds.createQueryRunner();
        await runner.connect();
        try {
          sent.push(settle(runner.query(`UPDATE ${table()} SET n = 2 WHERE id = ${p(1)}`, [seeded[round * 2]!.id])));
          const updated = runner.manager.update(HruItem, { id: seeded[round * 2 + 1]!.id }, { n: 1 });
          sent.push(settle(updated));
          if (awaitUpdate) await updated;
        } finally {
          void runner.release();
        }
      });
      expect(run.status).toBe(201);
    }
    const outcomes = await within(Promise.all(sent), 10_000);
    if (outcomes === 'waited') throw new Error('waited 10 s');
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Released before the update could begin (nothing awaited): TypeORM's error, nothing written.
    const committed = seeded.filter((_, index) => outcomes[index] === 'ok').map((item) => String(item.id));
    expect(outcomes.filter((outcome) => outcome !== 'ok' && outcome !== 'QueryRunnerAlreadyReleasedError')).toEqual([]);
    expect(await items().countBy({ id: In(seeded.map((item) => item.id)), n: In([1, 2]) })).toBe(committed.length);
    const left = await journal().count();
    // Rows of this instance that no live unit owns are recovered into events after 5 s.
    if (left > 0) {
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      await h.t.app.get(JournalRecovery).runPass();
    }
    const changes = (await h.changes()).filter((change) => change.entity === 'HruItem');
    expect({ left, changes: changes.length }).toEqual({ left: 0, changes: committed.length });
  }, 30_000);
});
