import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// DataSource.synchronize() called by the app while it runs (a mysql-typed data source on
// MariaDB, with a table prefix): twice (at the same time, TypeORM's own synchronize races over the app's tables: not tried).
describe.skipIf(!databases().includes('mariadb'))('explicit synchronize() on MariaDB through the mysql driver', () => {
  let db: TestDatabase;
  let app: TestApp | undefined;

  beforeAll(async () => {
    db = await createTestDatabase('mariadb');
    app = await createTestApp({ db: { ...db, options: { ...db.options, type: 'mysql', entityPrefix: 'rv_' } as TestDatabase['options'] }, adapter: 'express' });
  });
  afterAll(async () => {
    await app?.close();
    await db.drop();
  });

  const emptied = async (): Promise<number> =>
    Number(((await app!.dataSource.query('SELECT count(*) AS n FROM rv_audit_log WHERE changes IS NULL')) as Array<{ n: number | string }>)[0]?.n);

  it('keeps the changes of stored events across synchronize(), called again while the app runs', async () => {
    await app!.dataSource.getRepository(Order).save({ status: 'new', total: 1 });
    expect(await emptied()).toBe(0);
    await app!.dataSource.synchronize();
    expect(await emptied()).toBe(0);
    await app!.dataSource.synchronize();
    expect(await emptied()).toBe(0);
    const meta = app!.dataSource.entityMetadatas.filter((m) => m.tableName.startsWith('rv_audit'));
    expect(meta.every((m) => m.synchronize)).toBe(true);
  });
});
