import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { RequestHold } from '../app/request-hold.js';
import { TokenGuard } from '../app/token.guard.js';
import { MARIADB, POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** Where the handler waits, holding its first row lock, until the other session holds the second. */
const secondLocked = new RequestHold<string>();

@Controller('deadlock-victim')
@UseGuards(TokenGuard)
class DeadlockVictimController {
  readonly errors: string[] = [];

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * Inserts a draft, updates `first`, then `second`; an optional touch of `second` whose
   * failure it ignores, then a last insert and the commit.
   */
  @Post()
  @Audited('orders.reconciled')
  async reconcile(@Body() body: { note: string; first: number; second: number }): Promise<{ ok: true }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'draft', note: `${body.note}-draft` }));
      await runner.manager.update(Order, body.first, { note: 'by-app' });
      await secondLocked.wait(body.note);
      try {
        await runner.manager.update(Order, body.second, { note: 'by-app' });
      } catch (error) {
        this.errors.push((error as Error).message);
      }
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'final', note: `${body.note}-final` }));
      await runner.commitTransaction();
      return { ok: true };
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }
}

// MariaDB (InnoDB) rolls the whole transaction of a deadlock's victim back and lets its
// session go on: the statements after it run on their own.
describe.each(databases().filter((kind) => kind === 'mariadb'))('the victim of a deadlock that goes on on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [DeadlockVictimController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('what the server rolled back with the transaction is in no event; what committed after it is', async () => {
    const orders = t.dataSource.getRepository(Order);
    const seeded = await t.seed(() => orders.save(Array.from({ length: 60 }, (_, i) => orders.create({ status: 'seed', note: `s${i}` }))));
    const [first, second] = [seeded[0]!.id, seeded[1]!.id];
    // The other session changes many rows (second among them), so that InnoDB picks the app as the victim.
    const other = await mysql.createConnection({ ...MARIADB, database: String(db.options.database) });
    try {
      await other.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      secondLocked.arm();
      const pending = t.request('/deadlock-victim', { method: 'POST', json: { note: 'rc', first, second }, headers: { authorization: 'Bearer alice-token' } });
      await secondLocked.reached;
      await other.query('START TRANSACTION');
      await other.query(`UPDATE orders SET total = total + 1 WHERE id IN (${seeded.slice(1, 50).map((order) => order.id).join(',')})`);
      secondLocked.release();
      await new Promise((resolve) => setTimeout(resolve, 300)); // the app waits for second
      await other.query(`UPDATE orders SET note = 'by-other' WHERE id = ${first}`); // closes the cycle
      await other.query('COMMIT');

      const response = await pending;
      expect(response.status).toBe(201);
      expect(t.app.get(DeadlockVictimController).errors).toEqual([expect.stringMatching(/Deadlock found/)]);
    } finally {
      await other.end();
    }

    // The database: the draft and the update of `first` were rolled back with the transaction; the last insert committed.
    expect((await orders.findOneByOrFail({ id: first })).note).toBe('by-other');
    expect(await orders.findOneBy({ note: 'rc-draft' })).toBeNull();
    const final = await orders.findOneByOrFail({ note: 'rc-final' });

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['orders.reconciled', 'intent', 'success']]);
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(final.id), operation: 'insert' })]);
  });
});

// PostgreSQL aborts the victim's transaction: the handler's next statement fails, nothing of it commits.
describe.each(databases().filter((kind) => kind === 'postgres'))('the victim of a deadlock that goes on on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [DeadlockVictimController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('the request fails; nothing of its transaction is in the record', async () => {
    const orders = t.dataSource.getRepository(Order);
    const seeded = await t.seed(() => orders.save([orders.create({ status: 'seed', note: 's0' }), orders.create({ status: 'seed', note: 's1' })]));
    const [first, second] = [seeded[0]!.id, seeded[1]!.id];
    const other = new pg.Client(POSTGRES);
    await other.connect();
    try {
      await other.query(`SET search_path TO "${(db.options as { schema: string }).schema}"`);
      // The other session waits long before looking for a deadlock: the app finds it, and is its victim.
      await other.query(`SET deadlock_timeout = '20s'`);
      secondLocked.arm();
      const pending = t.request('/deadlock-victim', { method: 'POST', json: { note: 'pg', first, second }, headers: { authorization: 'Bearer alice-token' } });
      await secondLocked.reached;
      await other.query('BEGIN');
      await other.query('UPDATE orders SET total = total + 1 WHERE id = $1', [second]);
      secondLocked.release();
      await new Promise((resolve) => setTimeout(resolve, 300)); // the app waits for second, and is the first to find the deadlock
      await other.query(`UPDATE orders SET note = 'by-other' WHERE id = $1`, [first]);
      await other.query('COMMIT');

      const response = await pending;
      expect(response.status).toBe(500);
      expect(t.app.get(DeadlockVictimController).errors).toEqual([expect.stringMatching(/deadlock detected/)]);
    } finally {
      await other.end();
    }

    expect((await orders.findOneByOrFail({ id: first })).note).toBe('by-other');
    expect(await orders.findOneBy({ note: 'pg-draft' })).toBeNull();
    expect(await orders.findOneBy({ note: 'pg-final' })).toBeNull();

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['orders.reconciled', 'intent', 'failure']]);
    expect(rows[0]!.changes ?? []).toEqual([]);
  });
});
