import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditLogEntity } from '../../lib/index.js';
import { rawWrites } from '../../lib/capture/raw-statement.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const summary = (rows: AuditLogEntity[]) => rows.map((row) => ({ action: row.action, changes: row.changes }));

describe.each(databases().filter((kind) => kind !== 'sqlite'))('hostile raw SQL: writes a classifier could miss, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const options = kind === 'postgres' ? { ...db.options, extra: { ...db.options.extra, options: `-c search_path=${(db.options as { schema: string }).schema}` } } : db.options;
    t = await createTestApp({ db: { ...db, options }, adapter: 'express', controllers: [RawSqlController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.seed(async () => {
      await t.dataSource.query('DELETE FROM orders');
      await t.dataSource.getRepository(Order).save({ status: 'new', total: 10 });
    });
  });

  const notes = async () => (await t.dataSource.getRepository(Order).find()).map((order) => order.note);

  it.runIf(kind === 'mariadb')('MariaDB does not nest /* */ comments: an UPDATE after "/* a /* b */" runs and must be recorded', async () => {
    const sql = "/* a /* b */ UPDATE orders SET note = 'raw' -- */";
    const response = await t.request('/raw', { method: 'POST', json: { statements: [sql] } });
    expect(response.status).toBe(201);
    expect(await notes()).toEqual(['raw']); // the write happened
    expect(summary(await t.rows())).toEqual([
      { action: 'orders.maintained', changes: [{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }] },
    ]);
  });

  it.runIf(kind === 'mariadb')('MariaDB executable comment /*! … */ (as mysqldump writes) runs the UPDATE inside it: it must be recorded', async () => {
    const sql = "/*!40000 UPDATE orders SET note = 'raw' */";
    const response = await t.request('/raw', { method: 'POST', json: { statements: [sql] } });
    expect(response.status).toBe(201);
    expect(await notes()).toEqual(['raw']);
    expect(summary(await t.rows())).toEqual([
      { action: 'orders.maintained', changes: [{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }] },
    ]);
  });

  it.runIf(kind === 'mariadb')('MariaDB multi-table UPDATE: the table written in SET is recorded (not only the first joined table)', async () => {
    const sql = "UPDATE customers c RIGHT JOIN orders o ON c.id = o.customerId SET o.note = 'raw'";
    const response = await t.request('/raw', { method: 'POST', json: { statements: [sql] } });
    expect(response.status).toBe(201);
    expect(await notes()).toEqual(['raw']);
    const [row] = await t.rows();
    expect((row!.changes ?? []).map((change) => change.entity)).toContain('Order');
  });

  it.runIf(kind === 'postgres')('PostgreSQL ends a -- comment at a carriage return: the UPDATE after it runs and must be recorded', async () => {
    const sql = "-- maintenance\rUPDATE orders SET note = 'raw'";
    const response = await t.request('/raw', { method: 'POST', json: { statements: [sql] } });
    expect(response.status).toBe(201);
    expect(await notes()).toEqual(['raw']);
    expect(summary(await t.rows())).toEqual([
      { action: 'orders.maintained', changes: [{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }] },
    ]);
  });

  it.runIf(kind === 'postgres')('PostgreSQL treats a leading form feed as space: the UPDATE runs and must be recorded', async () => {
    const sql = "\fUPDATE orders SET note = 'raw'";
    const response = await t.request('/raw', { method: 'POST', json: { statements: [sql] } });
    expect(response.status).toBe(201);
    expect(await notes()).toEqual(['raw']);
    expect(summary(await t.rows())).toEqual([
      { action: 'orders.maintained', changes: [{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }] },
    ]);
  });
});

describe('hostile raw SQL: what the classifier costs on large statements', () => {
  // Every raw statement the app sends that may write goes through rawWrites() synchronously
  // on the event loop (audit.subscriber.ts afterQuery). It must stay linear.
  it('a 1 MB multi-row INSERT is classified in well under a second', () => {
    const sql = 'INSERT INTO orders (status, total) VALUES ' + Array.from({ length: 80_000 }, (_, i) => `('s${i}', ${i})`).join(',');
    expect(sql.length).toBeGreaterThan(1_000_000);
    const started = performance.now();
    expect(rawWrites(sql)).toEqual([{ verb: 'insert', table: { name: 'orders', quoted: false } }]);
    expect(performance.now() - started).toBeLessThan(1000);
  }, 120_000);

  it('a statement wrapped in many parentheses is classified in linear time (no hang)', () => {
    const depth = 60_000; // 120 kB of SQL
    const sql = '('.repeat(depth) + "UPDATE orders SET note = 'x'" + ')'.repeat(depth);
    const started = performance.now();
    expect(rawWrites(sql)).toEqual([{ verb: 'update', table: { name: 'orders', quoted: false } }]);
    expect(performance.now() - started).toBeLessThan(1000);
  }, 120_000);
});
