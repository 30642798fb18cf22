import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('implicit-commit')
@UseGuards(TokenGuard)
class ImplicitCommitController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Saves an order, empties a staging table with TRUNCATE, then fails and rolls back. */
  @Post()
  @Audited('orders.staged')
  async stage(@Body() body: { note: string; statement?: string }): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'staged', note: body.note }));
      await runner.query(body.statement ?? 'TRUNCATE TABLE staging');
      throw new Error('the staging step failed');
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }
}

// On MySQL and MariaDB, TRUNCATE (as any DDL) commits the transaction it runs in.
describe.each(databases().filter((kind) => kind === 'mariadb'))('a TRUNCATE inside a transaction on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [ImplicitCommitController] });
    await t.dataSource.query('CREATE TABLE staging (id int PRIMARY KEY)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('the save it committed before the handler’s ROLLBACK has a record', async () => {
    const response = await t.request('/implicit-commit', { method: 'POST', json: { note: 'implicit' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(500);
    // The ROLLBACK came after TRUNCATE had committed the save.
    const order = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'implicit' });

    const inserts = async () =>
      (await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order' && change.id === String(order.id) && change.operation === 'insert');
    await expect.poll(async () => (await inserts()).length, { timeout: 5000 }).toBe(1);
    // Claimed by the handler's failure event.
    const [intent] = (await t.rows()).filter((row) => row.action === 'orders.staged');
    expect(intent?.outcome).toBe('failure');
    expect(intent?.changes?.some((change) => change.entity === 'Order' && change.id === String(order.id))).toBe(true);
  });

  it('DDL (CREATE INDEX) commits the save as well: it has a record', async () => {
    const response = await t.request('/implicit-commit', {
      method: 'POST',
      json: { note: 'implicit-ddl', statement: 'CREATE INDEX idx_staging_id ON staging (id)' },
      headers: { authorization: 'Bearer alice-token' },
    });
    expect(response.status).toBe(500);
    const order = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'implicit-ddl' });
    const inserts = async () =>
      (await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order' && change.id === String(order.id) && change.operation === 'insert');
    await expect.poll(async () => (await inserts()).length, { timeout: 5000 }).toBe(1);
  });

  it('CREATE TEMPORARY TABLE commits nothing: the save the ROLLBACK undid has no record', async () => {
    const response = await t.request('/implicit-commit', {
      method: 'POST',
      json: { note: 'not-implicit', statement: 'CREATE TEMPORARY TABLE staging_tmp (id int)' },
      headers: { authorization: 'Bearer alice-token' },
    });
    expect(response.status).toBe(500);
    expect(await t.dataSource.getRepository(Order).findOneBy({ note: 'not-implicit' })).toBeNull();
    await expect.poll(async () => (await t.rows()).some((row) => row.action === 'orders.staged'), { timeout: 5000 }).toBe(true);
    expect((await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order')).toEqual([]);
  });
});
