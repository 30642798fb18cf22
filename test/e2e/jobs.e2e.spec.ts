import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditModule, AuditService } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { JobsController, OrderArchiver, OrderExpiryJob } from '../app/jobs.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(databases())('jobs and provider methods on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      imports: [ScheduleModule.forRoot()],
      controllers: [JobsController],
      providers: [OrderExpiryJob, OrderArchiver],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);

  it('a @Cron @Audited method fired by the scheduler: one intent row, source job, actor system, its changes', async () => {
    const stale = await t.seed(async () => {
      await orders().update({ status: 'stale' }, { status: 'old' });
      return orders().save([{ status: 'stale' }, { status: 'stale' }, { status: 'stale' }]);
    });
    const job = t.app.get(OrderExpiryJob);
    const before = job.runs;
    // Fire the scheduler's own job: the call goes through what @nestjs/schedule registered.
    await t.app.get(SchedulerRegistry).getCronJob('expire-orders').fireOnTick();
    await expect.poll(() => job.runs).toBe(before + 1);
    await expect.poll(async () => (await t.rows()).length).toBe(1);
    const [row] = await t.rows();
    expect(row).toMatchObject({ action: 'orders.expired', kind: 'intent', outcome: 'success', source: 'job', actorType: 'system', actorId: null });
    expect(row!.changes).toHaveLength(3);
    expect(row!.changes!.map((change) => change.id).sort()).toEqual(stale.map((order) => String(order.id)).sort());
    for (const change of row!.changes!) expect(change.fields).toEqual({ status: { from: 'stale', to: 'expired' } });
  });

  it('called directly by other code: the same single event', async () => {
    await t.seed(() => orders().save([{ status: 'stale' }]));
    expect(await t.app.get(OrderExpiryJob).expireStale()).toBe(1);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.source, row.changes?.length])).toEqual([['orders.expired', 'job', 1]]);
  });

  it('an @Audited service method inside a request: its own event claims its changes, with the request’s actor', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const response = await t.request(`/jobs/orders/${order.id}/close`, { method: 'POST', headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const rows = await t.rows();
    const byAction = Object.fromEntries(rows.map((row) => [row.action, row]));
    expect(rows).toHaveLength(2);
    const requestId = response.headers.get('x-request-id');
    expect(byAction['order.archived']).toMatchObject({ kind: 'intent', source: 'http', actorId: '1', requestId, targetId: String(order.id) });
    expect(byAction['order.archived']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'paid', to: 'archived' } } },
    ]);
    expect(byAction['order.closed']).toMatchObject({ kind: 'intent', source: 'http', actorId: '1', requestId });
    expect(byAction['order.closed']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'closing' } } },
    ]);
  });

  it('a queued job run with runAs carries the enqueuing user and request id', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    await t.app.get(OrderArchiver).notifyLater({ type: 'user', id: '1' }, 'req-enqueued-42', order.id);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.updated', kind: 'change', source: 'job', actorType: 'user', actorId: '1', requestId: 'req-enqueued-42' });
  });
});

describe('a CLI script', () => {
  it('runs as a standalone application context and records source cli', async () => {
    const db = await createTestDatabase('sqlite');
    @Module({
      imports: [
        TypeOrmModule.forRoot({ ...db.options, entities: [Order, Customer, ...AuditEntities], synchronize: true } as never),
        TypeOrmModule.forFeature([Order]),
        AuditModule.forRoot(),
      ],
    })
    class CliModule {}
    const app = await NestFactory.createApplicationContext(CliModule, { logger: false, abortOnError: false });
    const audit = app.get(AuditService);
    const dataSource = app.get(DataSource);
    await audit.runAs({ type: 'user', id: 'ops-admin', display: 'ops@example.com' }, async () => {
      await dataSource.getRepository(Order).save({ status: 'imported' });
      await audit.log({ action: 'orders.imported', reason: 'migration ticket OPS-12', context: { file: 'orders.csv' } });
    }, { source: 'cli' });
    const rows = await dataSource.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC' } });
    expect(rows.map((row) => [row.action, row.kind, row.source, row.actorId])).toEqual(
      expect.arrayContaining([
        ['orders.imported', 'intent', 'cli', 'ops-admin'],
        ['order.created', 'change', 'cli', 'ops-admin'],
      ]),
    );
    expect(rows).toHaveLength(2);
    await app.close();
  });
});
