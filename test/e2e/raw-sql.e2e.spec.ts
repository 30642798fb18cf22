import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

const EXPIRER = { type: 'system', id: 'expirer' } as const;

/** A raw write's change, as it is stored. */
const partial = (entity: string, operation: 'insert' | 'update' | 'delete', table?: string) => ({
  entity,
  id: null,
  operation,
  fields: {},
  partial: true,
  ...(table ? { table } : {}),
});

/** A raw SQL form, the databases that accept it, and the changes it must leave. */
interface Form {
  name: string;
  on: DatabaseKind[];
  sql: (names: Names) => string;
  changes: Array<ReturnType<typeof partial>>;
}

/** How the orders table is named on the database at hand. */
interface Names {
  /** The schema (PostgreSQL) or database (MariaDB) of the test, `main` on SQLite. */
  schema: string;
  /** The database's identifier quote. */
  q: (name: string) => string;
}

const ALL: DatabaseKind[] = ['sqlite', 'postgres', 'mariadb'];
const INSERT_VALUES = "(status, total) VALUES ('raw', 1)";

const FORMS: Form[] = [
  { name: 'a leading block comment', on: ALL, sql: () => "/* app */ UPDATE orders SET note = 'raw'", changes: [partial('Order', 'update')] },
  { name: 'a leading line comment', on: ALL, sql: () => "-- maintenance\nUPDATE orders SET note = 'raw'", changes: [partial('Order', 'update')] },
  { name: 'an upper-case unquoted name', on: ['sqlite', 'postgres'], sql: () => "UPDATE ORDERS SET note = 'raw'", changes: [partial('Order', 'update')] },
  { name: 'a quoted name', on: ALL, sql: ({ q }) => `DELETE FROM ${q('orders')} WHERE status = 'none'`, changes: [partial('Order', 'delete')] },
  { name: 'a schema-qualified name', on: ALL, sql: ({ q, schema }) => `UPDATE ${q(schema)}.orders SET note = 'raw'`, changes: [partial('Order', 'update')] },
  { name: 'UPDATE ONLY', on: ['postgres'], sql: () => "UPDATE ONLY orders SET note = 'raw'", changes: [partial('Order', 'update')] },
  { name: 'DELETE FROM ONLY', on: ['postgres'], sql: () => "DELETE FROM ONLY orders WHERE status = 'none'", changes: [partial('Order', 'delete')] },
  {
    name: 'a CTE before UPDATE',
    on: ['sqlite', 'postgres'],
    sql: () => "WITH paid AS (SELECT id FROM orders WHERE status = 'paid') UPDATE orders SET note = 'raw' WHERE id IN (SELECT id FROM paid)",
    changes: [partial('Order', 'update')],
  },
  {
    name: 'a CTE before INSERT',
    on: ['sqlite', 'postgres'],
    sql: () => "WITH v AS (SELECT 'raw' AS status) INSERT INTO orders (status, total) SELECT status, 1 FROM v",
    changes: [partial('Order', 'insert')],
  },
  {
    name: 'a CTE before DELETE',
    on: ['sqlite', 'postgres'],
    sql: () => "WITH gone AS (SELECT id FROM orders WHERE status = 'none') DELETE FROM orders WHERE id IN (SELECT id FROM gone)",
    changes: [partial('Order', 'delete')],
  },
  {
    name: 'a data-modifying CTE under a SELECT',
    on: ['postgres'],
    sql: () => "WITH d AS (DELETE FROM orders WHERE status = 'none' RETURNING *) SELECT count(*) FROM d",
    changes: [partial('Order', 'delete')],
  },
  {
    name: 'several writing CTEs',
    on: ['postgres'],
    sql: () =>
      "WITH d AS (DELETE FROM orders WHERE status = 'none' RETURNING id), c AS (UPDATE customers SET name = name WHERE false RETURNING id) " +
      "INSERT INTO orders (status, total) SELECT 'raw', count(*) FROM d",
    changes: [partial('Order', 'delete'), partial('Customer', 'update'), partial('Order', 'insert')],
  },
  { name: 'INSERT … ON CONFLICT', on: ['sqlite', 'postgres'], sql: () => `INSERT INTO orders ${INSERT_VALUES} ON CONFLICT DO NOTHING`, changes: [partial('Order', 'insert')] },
  { name: 'INSERT … ON DUPLICATE KEY UPDATE', on: ['mariadb'], sql: () => `INSERT INTO orders ${INSERT_VALUES} ON DUPLICATE KEY UPDATE note = 'raw'`, changes: [partial('Order', 'insert')] },
  { name: 'REPLACE INTO', on: ['sqlite', 'mariadb'], sql: () => `REPLACE INTO orders ${INSERT_VALUES}`, changes: [partial('Order', 'insert')] },
  { name: 'INSERT IGNORE', on: ['mariadb'], sql: () => `INSERT IGNORE INTO orders ${INSERT_VALUES}`, changes: [partial('Order', 'insert')] },
  { name: 'INSERT OR IGNORE', on: ['sqlite'], sql: () => `INSERT OR IGNORE INTO orders ${INSERT_VALUES}`, changes: [partial('Order', 'insert')] },
  { name: 'UPDATE LOW_PRIORITY IGNORE', on: ['mariadb'], sql: () => "UPDATE LOW_PRIORITY IGNORE orders SET note = 'raw'", changes: [partial('Order', 'update')] },
  {
    name: 'a multi-table DELETE with an alias',
    on: ['mariadb'],
    sql: () => "DELETE o FROM orders AS o JOIN customers c ON c.id = o.customerId WHERE c.name = 'none'",
    changes: [partial('Order', 'delete')],
  },
  {
    name: 'MERGE',
    on: ['postgres'],
    sql: () => "MERGE INTO orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN MATCHED THEN UPDATE SET note = 'raw'",
    changes: [partial('Order', 'update')],
  },
  { name: 'TRUNCATE', on: ['postgres'], sql: () => 'TRUNCATE ONLY orders, customers', changes: [partial('Order', 'delete'), partial('Customer', 'delete')] },
  {
    name: 'several statements in one query',
    on: ['postgres'],
    sql: () => "SELECT 1; UPDATE orders SET note = 'raw'; UPDATE customers SET name = name WHERE false",
    changes: [partial('Order', 'update'), partial('Customer', 'update')],
  },
  { name: 'a many-to-many junction table', on: ALL, sql: () => 'DELETE FROM user_following WHERE 1 = 0', changes: [partial('User', 'update')] },
  { name: 'a table no entity maps', on: ALL, sql: () => "INSERT INTO raw_notes (body) VALUES ('x')", changes: [partial('unknown', 'insert', 'raw_notes')] },
  { name: 'a quoted table no entity maps', on: ALL, sql: ({ q }) => `UPDATE ${q('raw_notes')} SET body = 'y'`, changes: [partial('unknown', 'update', 'raw_notes')] },
];

describe.each(databases())('raw SQL on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let names: Names;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // Unqualified names resolve in the test's own schema on PostgreSQL, as in an app's default schema.
    const options = kind === 'postgres' ? { ...db.options, extra: { ...db.options.extra, options: `-c search_path=${(db.options as { schema: string }).schema}` } } : db.options;
    t = await createTestApp({ db: { ...db, options }, adapter: 'express', controllers: [RawSqlController] });
    await t.dataSource.query('CREATE TABLE raw_notes (body varchar(20))');
    const schema = kind === 'sqlite' ? 'main' : kind === 'postgres' ? (db.options as { schema: string }).schema : String(db.options.database);
    names = { schema, q: (name) => t.dataSource.driver.escape(name) };
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
  });

  const job = <T>(fn: () => Promise<T>) => t.audit.runAs(EXPIRER, fn);
  const summary = (rows: AuditLogEntity[]) => rows.map((row) => ({ action: row.action, kind: row.kind, changes: row.changes }));
  const forms = FORMS.filter((form) => form.on.includes(kind));

  it.each(forms.map((form) => [form.name, form] as const))('outside @Audited, %s leaves a fallback row per written table', async (_name, form) => {
    await job(() => t.dataSource.query(form.sql(names)));
    const rows = await t.rows();
    // Fallback rows of one statement may share a millisecond: their order is not part of the record.
    const byContent = <T>(items: T[]): T[] => [...items].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    expect(byContent(summary(rows))).toEqual(
      byContent(
        form.changes.map((change) => ({
          action: `${change.entity.charAt(0).toLowerCase()}${change.entity.slice(1)}.${{ insert: 'created', update: 'updated', delete: 'deleted' }[change.operation]}`,
          kind: 'change',
          changes: [change],
        })),
      ),
    );
  });

  it.each(forms.map((form) => [form.name, form] as const))('inside @Audited, %s is among the intent’s changes', async (_name, form) => {
    const response = await t.request('/raw', { method: 'POST', json: { statements: [form.sql(names)] } });
    expect(response.status).toBe(201);
    expect(summary(await t.rows())).toEqual([{ action: 'orders.maintained', kind: 'intent', changes: form.changes }]);
  });

  it('writes of an excluded entity’s table and of the audit tables leave nothing', async () => {
    await job(async () => {
      await t.dataSource.query("/* app */ DELETE FROM sessions WHERE token = 'none'");
      await t.dataSource.query(`UPDATE ${kind === 'mariadb' ? 'audit_log' : 'AUDIT_LOG'} SET reason = 'x' WHERE 1 = 0`);
    });
    expect(await t.rows()).toEqual([]);
  });

  it('reads and transaction statements leave nothing', async () => {
    await job(async () => {
      await t.dataSource.query('SELECT * FROM orders');
      await t.dataSource.query("/* UPDATE orders */ SELECT 'DELETE FROM orders' AS x");
      await t.dataSource.transaction(async (manager) => {
        await manager.query('SELECT id FROM orders WHERE id = 1 FOR UPDATE'.replace(' FOR UPDATE', kind === 'sqlite' ? '' : ' FOR UPDATE'));
      });
    });
    expect(await t.rows()).toEqual([]);
  });

  it('a raw write in a transaction that rolls back leaves nothing', async () => {
    await expect(
      job(() =>
        t.dataSource.transaction(async (manager) => {
          await manager.query("/* app */ UPDATE orders SET note = 'raw'");
          throw new Error('undo');
        }),
      ),
    ).rejects.toThrow('undo');
    expect(await t.rows()).toEqual([]);
  });
});
