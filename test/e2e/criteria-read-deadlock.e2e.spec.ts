// A write by criteria (`repository.update(criteria, values)`) inside the app's transaction on
// MariaDB, whose pre-read (SELECT … FOR UPDATE) is chosen as a deadlock victim by InnoDB.
// InnoDB rolls back the WHOLE transaction on a deadlock. The app must learn it (its
// transaction failed); nothing it did may be half-committed; no rolled-back change may be recorded.
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves once the app's pre-read of B (its `SELECT … FOR UPDATE` of `orders`) is at the
 * server: `other` holds B's lock, so it waits there, and the app's transaction holds A.
 * (PROCESSLIST, not INNODB_LOCK_WAITS: InnoDB refreshes the latter only when nobody has
 * read it for 0.1 s, which a poll, or another suite polling, may never let happen.)
 */
async function preReadAtServer(other: mysql.Connection, database: string): Promise<void> {
  for (let waited = 0; ; waited += 50) {
    const [[row]] = await other.query<mysql.RowDataPacket[]>(
      "SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID() AND COMMAND = 'Query' AND INFO LIKE 'SELECT %FROM `orders`%FOR UPDATE'",
      [database],
    );
    if (Number(row!['n']) > 0) return;
    if (waited > 20_000) throw new Error('the app’s transaction never came to its pre-read of B');
    await sleep(50);
  }
}

describe.each(databases().filter((kind) => kind === 'mariadb'))('a deadlock in the pre-read of a write by criteria, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the app’s transaction fails and nothing of it is committed or recorded', { timeout: 30_000 }, async () => {
    const [a, b] = await t.seed(async () => {
      const repo = t.dataSource.getRepository(Order);
      return [await repo.save({ status: 'new', total: 1, note: 'A' }), await repo.save({ status: 'new', total: 1, note: 'B' })];
    });
    const o = db.options as { host: string; port: number; username: string; password?: string; database: string };
    const other = await mysql.createConnection({ host: o.host, port: o.port, user: o.username, password: o.password ?? '', database: o.database });
    try {
      // The other transaction: heavy (InnoDB then picks the app's as victim), holds B.
      await other.query('START TRANSACTION');
      for (let i = 0; i < 50; i++) await other.query("INSERT INTO orders (status, total, note) VALUES ('filler', 0, 'x')");
      await other.query("UPDATE orders SET note = 'other' WHERE id = ?", [b.id]);

      let appError: unknown;
      const app = t.dataSource
        .transaction(async (manager) => {
          const repo = manager.getRepository(Order);
          await repo.save({ ...a, status: 'paid' }); // holds A
          await repo.update({ id: b.id }, { status: 'shipped' }); // pre-read waits for B
        })
        .catch((error: unknown) => (appError = error));
      await preReadAtServer(other, o.database);
      // The other transaction now wants A: a deadlock, the app's transaction is the victim.
      await other.query("UPDATE orders SET note = 'other' WHERE id = ?", [a.id]);
      await other.query('COMMIT');
      await app;

      const rows = await t.dataSource.getRepository(Order).find({ where: [{ id: a.id }, { id: b.id }], order: { id: 'ASC' } });
      await sleep(500);
      const audit = (await t.rows()).map((row) => (row.changes ?? []).map((c) => ({ entity: c.entity, id: c.id, op: c.operation, status: (c as { fields?: Record<string, { to?: unknown }> }).fields?.['status']?.to })));
      expect({
        appSawError: appError !== undefined,
        statuses: rows.map((row) => row.status),
        recorded: audit.flat().filter((c) => c.entity === 'Order' && c.status !== undefined),
      }).toEqual({
        appSawError: true,
        statuses: ['new', 'new'],
        recorded: [],
      });
    } finally {
      await other.end();
    }
  });
});
