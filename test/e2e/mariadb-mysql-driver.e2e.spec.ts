import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// An app that reaches MariaDB through TypeORM's `mysql` driver with `synchronize: true`
// (common: MariaDB speaks MySQL's protocol). That driver reads MariaDB's JSON columns as
// longtext and every nullable column's default as the text NULL, so its synchronize would
// drop and re-add the audit tables' JSON columns on each start.
describe.skipIf(!databases().includes('mariadb'))("MariaDB through TypeORM's mysql driver, synchronize on", () => {
  let db: TestDatabase;
  let app: TestApp | undefined;
  const { privateKey } = generateKeyPairSync('ed25519');

  const start = async (): Promise<TestApp> =>
    createTestApp({
      db: { ...db, options: { ...db.options, type: 'mysql' } as TestDatabase['options'] },
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: 'audit.test/mysql-driver' } },
    });

  beforeAll(async () => {
    db = await createTestDatabase('mariadb');
  });
  afterAll(async () => {
    await app?.close();
    await db.drop();
  });

  it('keeps the stored events whole across restarts: their changes, context and error, and verify() stays ok', async () => {
    app = await start();
    const order = await app.dataSource.getRepository(Order).save({ status: 'new', total: 1200 });
    await app.dataSource.getRepository(Order).update(order.id, { total: 1300 });
    const stored = await app.rows();
    expect(stored.map((row) => row.action)).toEqual(['order.created', 'order.updated']);
    expect(stored.every((row) => Array.isArray(row.changes) && row.changes.length === 1)).toBe(true);
    await app.audit.checkpoint();
    await app.close();

    for (let restart = 0; restart < 2; restart++) {
      app = await start();
      const rows = await app.rows();
      expect(rows.map((row) => ({ id: row.id, changes: row.changes, context: row.context, error: row.error }))).toEqual(
        stored.map((row) => ({ id: row.id, changes: row.changes, context: row.context, error: row.error })),
      );
      const emptied = (await app.dataSource.query('SELECT count(*) AS n FROM audit_log WHERE changes IS NULL')) as Array<{ n: number | string }>;
      expect(Number(emptied[0]?.n)).toBe(0);
      const verified = await app.audit.verify();
      expect(verified.problems).toEqual([]);
      expect(verified.ok).toBe(true);
      await app.close();
      app = undefined;
    }
  });

  it('still records what the app does after a restart', async () => {
    app = await start();
    const order = await app.dataSource.getRepository(Order).save({ status: 'new', total: 50 });
    const rows = await app.rows();
    const created = rows.filter((row) => row.action === 'order.created' && row.targetId === String(order.id));
    expect(created).toHaveLength(1);
    expect(created[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(order.id), operation: 'insert' })]);
  });
});
