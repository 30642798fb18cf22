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

  /** PostgreSQL: a statement fails (the transaction is aborted), then a raw COMMIT, which PostgreSQL would take as a ROLLBACK. */
  @Post('aborted')
  @Audited('orders.raw-commit-aborted')
  async aborted(@Body() body: { note: string }): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: body.note }));
      await runner.query('SELECT 1 / 0').catch(() => undefined);
      await runner.query('COMMIT');
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      throw error;
    } finally {
      await runner.release();
    }
  }

  /** Ends its transaction with a raw ROLLBACK, then releases the runner. */
  @Post('rollback')
  @Audited('orders.raw-rolled-back')
  async rolledBack(@Body() body: { note: string }): Promise<{ id: number }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      const order = await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: body.note }));
      await runner.query('ROLLBACK');
      return { id: order.id };
    } finally {
      await runner.release();
    }
  }

  /**
   * Commits by hand (in a savepoint of its transaction, in another spelling of COMMIT), saves
   * again on the runner (now in no transaction: autocommitted), then calls commitTransaction().
   */
  @Post('then-more')
  @Audited('orders.raw-committed-then-more')
  async thenMore(@Body() body: { note: string; commit: string }): Promise<{ ids: number[] }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      const first = await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: `${body.note}-1` }));
      await runner.startTransaction();
      const second = await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: `${body.note}-2` }));
      await runner.query(body.commit);
      const third = await runner.manager.save(Order, runner.manager.create(Order, { status: 'raw', note: `${body.note}-3` }));
      // TypeORM still counts two levels: RELEASE SAVEPOINT fails now, as without the module.
      await runner.commitTransaction().catch(() => undefined);
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      return { ids: [first.id, second.id, third.id] };
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
    // Claimed by the handler's event, not a fallback event of its own.
    const [intent] = (await t.rows()).filter((row) => row.action === 'orders.raw-committed');
    expect(intent?.changes?.some((change) => change.entity === 'Order' && change.id === String(id))).toBe(true);
  });

  it('the handler answers without waiting for the transaction it ended by hand', async () => {
    const started = Date.now();
    const response = await t.request('/raw-commit', { method: 'POST', json: { note: 'raw-commit-fast' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it.runIf(kind === 'postgres')('a raw COMMIT of an aborted transaction fails (its record cannot be written), and nothing is recorded of what it rolled back', async () => {
    const response = await t.request('/raw-commit/aborted', { method: 'POST', json: { note: 'raw-aborted' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(500);
    expect(await t.dataSource.getRepository(Order).findOneBy({ note: 'raw-aborted' })).toBeNull();
    await expect.poll(async () => (await t.rows()).some((row) => row.action === 'orders.raw-commit-aborted'), { timeout: 5000 }).toBe(true);
    const [intent] = (await t.rows()).filter((row) => row.action === 'orders.raw-commit-aborted');
    expect(intent?.outcome).toBe('failure');
    expect((await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order')).toEqual([]);
  });

  it('a transaction ended by a raw ROLLBACK: its insert, never committed, has no record', async () => {
    const started = Date.now();
    const response = await t.request('/raw-commit/rollback', { method: 'POST', json: { note: 'raw-rollback' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(1500);
    const { id } = (await response.json()) as { id: number };
    expect(await t.dataSource.getRepository(Order).findOneBy({ id })).toBeNull();
    await expect.poll(async () => (await t.rows()).some((row) => row.action === 'orders.raw-rolled-back'), { timeout: 5000 }).toBe(true);
    const [intent] = (await t.rows()).filter((row) => row.action === 'orders.raw-rolled-back');
    expect(intent?.changes ?? []).toEqual([]);
    expect((await t.rows()).flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order')).toEqual([]);
  });

  it('a raw COMMIT inside a savepoint, a save after it and a late commitTransaction(): each committed insert has one record', async () => {
    const commit = kind === 'postgres' ? 'END' : kind === 'sqlite' ? 'end transaction' : 'commit work';
    const response = await t.request('/raw-commit/then-more', { method: 'POST', json: { note: 'then-more', commit }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { ids } = (await response.json()) as { ids: number[] };
    for (const id of ids) expect(await t.dataSource.getRepository(Order).findOneBy({ id })).not.toBeNull();
    const inserted = async () =>
      (await t.rows())
        .flatMap((row) => row.changes ?? [])
        .filter((change) => change.entity === 'Order' && change.operation === 'insert')
        .map((change) => change.id)
        .sort();
    await expect.poll(inserted, { timeout: 5000 }).toEqual(ids.map(String).sort());
  });
});
