import { beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, InsertQueryBuilder, PrimaryGeneratedColumn } from 'typeorm';
import type { AuditChange } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { captureApp } from '../app/capture-harness.js';

/** Rows an INSERT … SELECT selects from. */
@Entity('is_source')
class IsSource {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 60 }) name!: string;
}

/** The rows it inserts, keyed by an increment id (SQLite: the rowid). */
@Entity('is_target')
class IsTarget {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 60 }) name!: string;
}

/** `valuesFromSelect()` (INSERT … SELECT) exists from TypeORM 1 on. */
const insertsFromSelect = typeof (InsertQueryBuilder.prototype as { valuesFromSelect?: unknown }).valuesFromSelect === 'function';

/**
 * An INSERT … SELECT recorded from the ids the database numbered its rows with (SQLite's
 * rowids, MySQL's and MariaDB's increment ids) names only rows the statement inserted, with
 * their values: never a row another statement, or a trigger, inserted among them.
 */
describe.skipIf(!insertsFromSelect).each(databases())('INSERT … SELECT ids, on %s', (kind) => {
  const h = captureApp(kind, [IsSource, IsTarget]);
  const targets = () => h.ds.getRepository(IsTarget);
  const copy = (prefix: string) =>
    h.ds
      .createQueryBuilder()
      .insert()
      .into(IsTarget, ['name'])
      .valuesFromSelect((select) => select.select('s.name', 'name').from(IsSource, 's').where('s.name LIKE :prefix', { prefix: `${prefix}-%` }).orderBy('s.id'))
      .execute();
  const seedSources = (prefix: string, count: number) =>
    h.t.seed(() => h.ds.getRepository(IsSource).save(Array.from({ length: count }, (_, i) => ({ name: `${prefix}-${i}` })), { chunk: 500 }));
  /** The inserts of targets recorded, by id, with the name each was recorded with. */
  const recordedInserts = async (): Promise<AuditChange[]> => (await h.changes()).filter((change) => change.entity === 'IsTarget' && change.operation === 'insert');

  describe.runIf(kind === 'sqlite')('SQLite', () => {
    beforeAll(async () => {
      // A trigger inserting a row of the same table for each row inserted: its rows take rowids among the statement's.
      await h.ds.query(
        "CREATE TRIGGER is_target_shadow AFTER INSERT ON is_target WHEN NEW.name NOT LIKE 'shadow-%' BEGIN INSERT INTO is_target (name) VALUES ('shadow-' || NEW.name); END",
      );
    });

    it('with a trigger inserting rows of the same table: records no row the statement did not insert, and every one it did, or their count', async () => {
      await seedSources('trig', 3);
      expect(await h.run('fallback', () => copy('trig'))).toEqual({ status: null, error: null });
      const stored = await targets().find({ order: { id: 'ASC' } });
      const byId = new Map(stored.map((row) => [String(row.id), row.name]));
      const inserts = await recordedInserts();
      const named = inserts.filter((change) => change.id !== null);
      for (const change of named) expect(byId.get(change.id!)).toBe((change.fields.name as { to: unknown }).to);
      // Only rows of the statement itself are named; the rest of its three rows are counted.
      for (const change of named) expect((change.fields.name as { to: string }).to).toMatch(/^trig-/);
      const counted = inserts.filter((change) => change.id === null).reduce((sum, change) => sum + (change.count ?? 0), 0);
      expect(named.length + counted).toBe(3);
    });
  });

  describe.runIf(kind === 'mariadb')('MariaDB', () => {
    it('on a connection whose auto_increment_increment is 2: each row recorded is one the statement inserted', async () => {
      await seedSources('step', 4);
      const runner = h.ds.createQueryRunner();
      try {
        await runner.query('SET SESSION auto_increment_increment = 2');
        const write = () =>
          runner.manager
            .createQueryBuilder()
            .insert()
            .into(IsTarget, ['name'])
            .valuesFromSelect((select) => select.select('s.name', 'name').from(IsSource, 's').where('s.name LIKE :prefix', { prefix: 'step-%' }).orderBy('s.id'))
            .execute();
        expect(await h.run('fallback', write)).toEqual({ status: null, error: null });
      } finally {
        await runner.query('SET SESSION auto_increment_increment = 1');
        await runner.release();
      }
      const byId = new Map((await targets().find()).map((row) => [String(row.id), row.name]));
      const inserts = await recordedInserts();
      const named = inserts.filter((change) => change.id !== null);
      for (const change of named) {
        expect(byId.get(change.id!)).toBe((change.fields.name as { to: unknown }).to);
        expect((change.fields.name as { to: string }).to).toMatch(/^step-/);
      }
      const counted = inserts.filter((change) => change.id === null).reduce((sum, change) => sum + (change.count ?? 0), 0);
      expect(named.length + counted).toBe(4);
    });

    it('while another connection inserts rows into the table: each row recorded is one the statement inserted', async () => {
      const prefix = 'conc';
      await seedSources(prefix, 3000);
      let inserting = true;
      let others = 0;
      const other = (async () => {
        const runner = h.ds.createQueryRunner();
        try {
          // Bounded: at most 2000 rows, and only while the INSERT … SELECT runs.
          while (inserting && others < 2000) {
            await runner.query('INSERT INTO is_target (name) VALUES (?)', [`other-${others++}`]);
          }
        } finally {
          await runner.release();
        }
      })();
      try {
        expect(await h.run('fallback', () => copy(prefix))).toEqual({ status: null, error: null });
      } finally {
        inserting = false;
        await other;
      }
      expect(others).toBeGreaterThan(0);
      const stored = await targets().find();
      const byId = new Map(stored.map((row) => [String(row.id), row.name]));
      const inserts = await recordedInserts();
      const named = inserts.filter((change) => change.id !== null);
      for (const change of named) {
        expect(byId.get(change.id!)).toBe((change.fields.name as { to: unknown }).to);
        expect((change.fields.name as { to: string }).to).toMatch(/^conc-/);
      }
      const counted = inserts.filter((change) => change.id === null).reduce((sum, change) => sum + (change.count ?? 0), 0);
      expect(named.length + counted).toBe(3000);
    }, 60_000);
  });
});
