import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { within } from '../support/within.js';

const BOUND_MS = 10_000;

/** The orders table's name as raw SQL writes it (with its schema on PostgreSQL). */
const ordersTable = (t: TestApp): string => t.dataSource.getMetadata(Order).tablePath.split('.').map((name) => t.dataSource.driver.escape(name)).join('.');

/** The raw writes made outside any unit of work, each the first write of a new app: by name. */
const RAW_WRITES: Record<string, (t: TestApp) => Promise<unknown>> = {
  'repository.clear()': (t) => t.dataSource.getRepository(Order).clear(),
  "query('DELETE …')": (t) => t.dataSource.query(`DELETE FROM ${ordersTable(t)}`),
};

/**
 * A raw write outside any unit of work is recorded as a fallback event stored on the
 * connection the write was made on. When it is the app's first such event, the writer's
 * first statement (on MySQL/MariaDB, the read of `max_allowed_packet`) goes out at once,
 * from inside the capture: on a TypeORM whose `query()` waits for the capture by hand
 * (0.3 on MySQL/MariaDB and better-sqlite3), that statement must not wait for the
 * capture it belongs to, or the app's write never returns.
 */
describe.each(databases())('the first raw write of an app, outside any unit of work, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  // Two raw writes sent at once on one query runner the app holds: the second one's capture
  // starts while the first one's read of `max_allowed_packet`, sent on that runner, is out.
  it('two raw writes sent at once on one query runner both return, each recorded in a fallback event', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    const table = ordersTable(t);
    const runner = t.dataSource.createQueryRunner();
    try {
      const both = Promise.all([runner.query(`DELETE FROM ${table}`), runner.query(`DELETE FROM ${table}`)]);
      expect(await within(both.then(() => 'returned'), BOUND_MS), `the writes did not return within ${BOUND_MS} ms`).toBe('returned');
    } finally {
      await runner.release();
    }
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.changes).toEqual([expect.objectContaining({ entity: 'Order', partial: true })]);
  }, BOUND_MS + 20_000);

  it.each(Object.keys(RAW_WRITES))('%s returns and is recorded in a fallback event', async (write) => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    expect(await within(RAW_WRITES[write]!(t).then(() => 'returned'), BOUND_MS), `${write} did not return within ${BOUND_MS} ms`).toBe('returned');
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ kind: 'change', outcome: 'success' });
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', partial: true })]);
  }, BOUND_MS + 20_000);
});
