import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('raw-savepoint')
@UseGuards(TokenGuard)
class RawSavepointController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Saves a kept order, then a second one inside a savepoint it rolls back by hand, then commits. */
  @Post()
  @Audited('orders.drafted')
  async draft(@Body() body: { note: string }): Promise<{ kept: number }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      const kept = await runner.manager.save(Order, runner.manager.create(Order, { status: 'kept', note: `${body.note}-kept` }));
      await runner.query('SAVEPOINT draft');
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'draft', note: `${body.note}-draft` }));
      await runner.query('ROLLBACK TO SAVEPOINT draft');
      await runner.commitTransaction();
      return { kept: kept.id };
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }
}

describe.each(databases())('a savepoint rolled back with raw SQL on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [RawSavepointController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('the change rolled back to the savepoint is in no event; the kept one is claimed', async () => {
    const response = await t.request('/raw-savepoint', { method: 'POST', json: { note: 'sp' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { kept } = (await response.json()) as { kept: number };
    const orders = await t.dataSource.getRepository(Order).find({ where: {}, order: { id: 'ASC' } });
    expect(orders.map((order) => order.note)).toEqual(['sp-kept']);

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['orders.drafted', 'intent', 'success']]);
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(kept), operation: 'insert' })]);
    expect(JSON.stringify(rows)).not.toContain('sp-draft');
  });
});
