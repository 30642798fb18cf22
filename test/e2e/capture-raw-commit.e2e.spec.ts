import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('raw-commit')
@UseGuards(TokenGuard)
class RawCommitController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Starts its transaction with TypeORM, ends it with a raw COMMIT, then releases the runner. */
  @Post()
  @Audited('orders.raw-committed')
  async create(@Body() body: { note: string }): Promise<{ id: number }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      const order = await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: body.note }));
      await runner.query('COMMIT');
      return { id: order.id };
    } finally {
      await runner.release();
    }
  }
}

describe.each(databases())('a transaction ended by a raw COMMIT on its query runner on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [RawCommitController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('a transaction started with startTransaction() and ended by a raw COMMIT: its committed insert has a record', async () => {
    const response = await t.request('/raw-commit', { method: 'POST', json: { note: 'raw-commit' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: number };
    expect(await t.dataSource.getRepository(Order).findOneBy({ id })).toMatchObject({ note: 'raw-commit' });

    // G1: the committed change is recorded (here, or as a fallback event a little later).
    const inserts = async () =>
      (await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order' && change.id === String(id) && change.operation === 'insert');
    await expect.poll(async () => (await inserts()).length, { timeout: 5000 }).toBe(1);
  });
});
