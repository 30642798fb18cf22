// A raw SQL write is recorded by the time its `query()` returns: inside a transaction, in
// the journal rows or fallback events its COMMIT writes, however soon the COMMIT follows;
// outside one, stored (or journaled, in a unit) before the app goes on. TypeORM 0.3's
// MySQL/MariaDB query runner resolves a query without waiting for its subscribers'
// `afterQuery` work: these run in the NestJS 11 + TypeORM 0.3 suite too.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, type AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

/** Tables no entity maps, written by hand. */
const TABLES = ['raw_w1', 'raw_w2', 'raw_w3', 'raw_w4', 'raw_w5', 'raw_w6'];

/**
 * One statement writing `tables`: a multi-table UPDATE on MariaDB, several statements in
 * one query on PostgreSQL; SQLite runs one statement per query, so it writes one table.
 */
function writeOf(kind: DatabaseKind, tables: readonly string[]): { sql: string; tables: string[] } {
  if (kind === 'sqlite') return { sql: `UPDATE ${tables[0]} SET v = v + 1`, tables: [tables[0]!] };
  if (kind === 'mariadb') return { sql: `UPDATE ${tables.join(', ')} SET ${tables.map((table) => `${table}.v = ${table}.v + 1`).join(', ')}`, tables: [...tables] };
  return { sql: tables.map((table) => `UPDATE ${table} SET v = v + 1`).join('; '), tables: [...tables] };
}

/** A raw write's change of a table no entity maps, as it is stored. */
const change = (table: string) => ({ entity: 'unknown', id: null, operation: 'update', fields: {}, partial: true, table });

const summary = (rows: AuditLogEntity[]) => rows.map((row) => ({ action: row.action, kind: row.kind, changes: row.changes }));
/** Fallback rows of one statement may share a millisecond: their order is not part of the record. */
const byContent = <T>(items: T[]): T[] => [...items].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
const fallbacks = (tables: readonly string[]) => byContent(tables.map((table) => ({ action: 'unknown.updated', kind: 'change', changes: [change(table)] })));

describe.each(databases())('raw SQL recorded before query() returns, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const options = kind === 'postgres' ? { ...db.options, extra: { ...db.options.extra, options: `-c search_path=${(db.options as { schema: string }).schema}` } } : db.options;
    t = await createTestApp({ db: { ...db, options }, adapter: 'express', controllers: [RawSqlController] });
    for (const table of TABLES) {
      await t.dataSource.query(`CREATE TABLE ${table} (v integer)`);
      await t.dataSource.query(`INSERT INTO ${table} (v) VALUES (0)`);
    }
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** Lets anything the capture still had in flight land: a record arriving late shows up after this. */
  const settled = async (): Promise<void> => {
    await new Promise((resolve) => setTimeout(resolve, 100));
    await t.app.get(AuditWriter).drain(10_000);
  };
  // What a test left in flight (when it failed) lands before the next one starts.
  beforeEach(async () => {
    await settled();
    await t.clearAudit();
    await t.dataSource.getRepository(AuditJournalEntity).clear();
  });

  const one = writeOf(kind, TABLES.slice(0, 1));
  const several = writeOf(kind, TABLES);
  const journal = () => t.dataSource.getRepository(AuditJournalEntity).count();

  it.each([
    ['one table', one],
    ['several tables', several],
  ])('outside any transaction and unit, %s: the fallback events are stored when query() returns, once', async (_name, write) => {
    await t.dataSource.query(write.sql);
    expect(byContent(summary(await t.rows())), 'the fallback events once query() has returned').toEqual(fallbacks(write.tables));
    await settled();
    expect(byContent(summary(await t.rows())), 'the fallback events, later').toEqual(fallbacks(write.tables));
  });

  it('outside any transaction and unit, repository.clear() (TRUNCATE, DELETE on SQLite): its fallback event is stored when it returns, once', async () => {
    await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    await t.dataSource.getRepository(Order).clear();
    const cleared = [{ action: 'order.deleted', kind: 'change', changes: [{ entity: 'Order', id: null, operation: 'delete', fields: {}, partial: true }] }];
    expect(summary(await t.rows()), 'the fallback event once clear() has returned').toEqual(cleared);
    await settled();
    expect(summary(await t.rows()), 'the fallback event, later').toEqual(cleared);
  });

  describe.each([
    [
      'dataSource.transaction()',
      (sql: string, end: 'commit' | 'rollback') =>
        t.dataSource
          .transaction(async (manager) => {
            await manager.query(sql);
            if (end === 'rollback') throw new Error('undo');
          })
          .catch((error: Error) => {
            if (error.message !== 'undo') throw error;
          }),
    ],
    [
      'a query runner',
      async (sql: string, end: 'commit' | 'rollback') => {
        const runner = t.dataSource.createQueryRunner();
        try {
          await runner.startTransaction();
          await runner.query(sql);
          await (end === 'commit' ? runner.commitTransaction() : runner.rollbackTransaction());
        } finally {
          await runner.release();
        }
      },
    ],
  ])('in a transaction of %s, committed or rolled back as soon as the raw write returns', (_how, transaction) => {
    it.each([
      ['one table', one],
      ['several tables', several],
    ])('%s: a COMMIT writes each change’s fallback event in the transaction, once', async (_name, write) => {
      await transaction(write.sql, 'commit');
      // Written in the transaction: there once it has committed, not some time after.
      expect(byContent(summary(await t.rows())), 'the fallback events once the transaction has committed').toEqual(fallbacks(write.tables));
      await settled();
      expect(byContent(summary(await t.rows())), 'the fallback events, later').toEqual(fallbacks(write.tables));
      expect(await journal()).toBe(0);
    });

    it.each([
      ['one table', one],
      ['several tables', several],
    ])('%s: a ROLLBACK leaves no record, now or later', async (_name, write) => {
      await transaction(write.sql, 'rollback');
      expect(summary(await t.rows())).toEqual([]);
      await settled();
      expect(summary(await t.rows()), 'records arriving after the rollback').toEqual([]);
      expect(await journal()).toBe(0);
    });
  });

  it.each([
    ['outside a transaction', '/raw'],
    ['in a transaction', '/raw/transaction'],
  ])('inside @Audited, %s: the intent claims every change once, and no journal row outlives it', async (_name, path) => {
    const response = await t.request(path, { method: 'POST', json: { statements: [several.sql] } });
    expect(response.status).toBe(201);
    const intent = [{ action: 'orders.maintained', kind: 'intent', changes: several.tables.map(change) }];
    expect(summary(await t.rows())).toEqual(intent);
    await settled();
    // A journal row written after its unit was stored would be recovered as a second record of the change.
    expect(await journal(), 'journal rows left once the unit was stored').toBe(0);
    await t.app.get(JournalRecovery).runPass();
    expect(summary(await t.rows()), 'the record after a recovery pass').toEqual(intent);
  });
});
