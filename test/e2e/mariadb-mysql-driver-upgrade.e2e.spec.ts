import 'reflect-metadata';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// An app on MariaDB through TypeORM's `mysql` driver, schema kept by synchronize alone (no
// migrations), upgrading to a module version whose audit_log has a column more: the
// column is added at start, as it is with type mariadb.
describe.skipIf(!databases().includes('mariadb'))("upgrade on MariaDB through the mysql driver, synchronize only", () => {
  let db: TestDatabase;
  let app: TestApp | undefined;

  let type: 'mysql' | 'mariadb' = 'mysql';
  const start = async (): Promise<TestApp> =>
    createTestApp({ db: { ...db, options: { ...db.options, type } as TestDatabase['options'] }, adapter: 'express', migrations: [] });

  beforeEach(async () => {
    db = await createTestDatabase('mariadb');
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await db.drop();
  });

  it.each(['mysql', 'mariadb'] as const)('a column the new version adds to audit_log is created at start, and the app keeps recording (type %s)', async (given) => {
    type = given;
    app = await start();
    await app.dataSource.getRepository(Order).save({ status: 'new', total: 1 });
    // The table as an earlier version made it: without audit_log.seq.
    await app.dataSource.query('ALTER TABLE audit_log DROP INDEX idx_audit_log_seq').catch(() => undefined);
    await app.dataSource.query('ALTER TABLE audit_log DROP COLUMN seq');
    await app.close();
    app = undefined;

    app = await start();
    const response = await app.request('/orders', { method: 'POST', json: { status: 'new', total: 2 } });
    expect(response.status).toBeLessThan(300);
    expect((await app.rows()).filter((row) => row.action === 'order.created')).toHaveLength(2);
    const columns = (await app.dataSource.query("SELECT column_name AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'audit_log'")) as Array<{ name: string }>;
    expect(columns.map((column) => column.name)).toContain('seq');
  });
});
