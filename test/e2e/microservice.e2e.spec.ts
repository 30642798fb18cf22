import { headers as natsHeaders } from '@nats-io/transport-node';
import { Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, NatsRecordBuilder, TcpContext, Transport, type ClientProxy } from '@nestjs/microservices';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import { firstValueFrom } from 'rxjs';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditMigrations, AuditModule } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Customer } from '../app/customer.entity.js';
import { OrderArchiver } from '../app/jobs.js';
import { CLOSE_COMMAND, OrderMessagesController, RpcAdminGuard, RpcTokenGuard, SUBJECTS, type OrderMessage } from '../app/order-messages.controller.js';
import { Order } from '../app/order.entity.js';
import { freePort, NATS_URL, natsAvailable } from '../support/broker-probe.js';
import { clearAuditLog } from '../support/clear-audit-log.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const natsUp = await natsAvailable();
const kinds = databases().filter((kind) => kind !== 'mariadb');

/** A NATS request with headers, as a calling service sends it. */
function natsSend<T>(client: ClientProxy, subject: string, data: OrderMessage, headers: Record<string, string> = {}): Promise<T> {
  const natsHeaderSet = natsHeaders();
  for (const [name, value] of Object.entries(headers)) natsHeaderSet.set(name, value);
  return firstValueFrom(client.send<T>(subject, new NatsRecordBuilder(data).setHeaders(natsHeaderSet).build()));
}

describe.skipIf(!natsUp).each(kinds)('microservice message handlers of a hybrid app on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let nats: ClientProxy;
  let tcp: ClientProxy;
  let tcpPort: number;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    tcpPort = await freePort();
    t = await createTestApp({
      db,
      adapter: 'express',
      controllers: [OrderMessagesController],
      providers: [OrderArchiver, RpcTokenGuard, RpcAdminGuard],
      // A hybrid app: its message handlers get the app's global interceptor only with inheritAppConfig.
      configure: async (app) => {
        app.connectMicroservice({ transport: Transport.NATS, options: { servers: [NATS_URL] } }, { inheritAppConfig: true });
        app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
        await app.startAllMicroservices();
      },
    });
    nats = ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [NATS_URL] } });
    tcp = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    await Promise.all([nats.connect(), tcp.connect()]);
  });
  afterAll(async () => {
    await nats?.close();
    await tcp?.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const send = <T>(subject: string, data: OrderMessage, headers: Record<string, string> = {}) => natsSend<T>(nats, subject, data, headers);

  it('NATS: a message a guard turns away gives one failure row before the client gets the error', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid', total: 10 }));
    await expect(
      send(SUBJECTS.refund, { id: order.id }, { authorization: 'Bearer bob-token', 'x-request-id': 'nats-denied-1' }),
    ).rejects.toMatchObject({ message: 'Admins only' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.refunded',
      outcome: 'failure',
      kind: 'intent',
      source: 'rpc',
      method: 'NATS',
      route: SUBJECTS.refund,
      requestId: 'nats-denied-1',
      actorId: '2',
      targetType: 'order',
      targetId: String(order.id),
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'RpcException', message: 'Admins only' });
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('paid');

    await t.clearAudit();
    await send(SUBJECTS.refund, { id: order.id }, { authorization: 'Bearer alice-token' });
    expect((await t.rows()).map((row) => [row.action, row.outcome])).toEqual([['order.refunded', 'success']]);
  });

  it('NATS: an @Audited handler gives one intent row with source rpc, the transport, the pattern and the header request id', async () => {
    const order = await t.seed(() => orders().save({ status: 'new', total: 10 }));
    const reply = await send<Order>(
      SUBJECTS.update,
      { id: order.id, status: 'packed', user: { id: 2, email: 'bob@example.com' } },
      { 'x-request-id': 'nats-req-1', 'x-reason': 'warehouse scan' },
    );
    expect(reply).toMatchObject({ id: order.id, status: 'packed' });

    // No waiting: the reply comes after the row is stored.
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.action).toBe('order.updated');
    expect(row.kind).toBe('intent');
    expect(row.outcome).toBe('success');
    expect(row.source).toBe('rpc');
    expect(row.actorType).toBe('user');
    expect(row.actorId).toBe('2');
    expect(row.actorDisplay).toBe('bob@example.com');
    expect(row.method).toBe('NATS');
    expect(row.route).toBe(SUBJECTS.update);
    expect(row.path).toBe(SUBJECTS.update);
    expect(row.requestId).toBe('nats-req-1');
    expect(row.ip).toBeNull();
    expect(row.userAgent).toBeNull();
    expect(row.targetType).toBe('order');
    expect(row.targetId).toBe(String(order.id));
    expect(row.reason).toBe('warehouse scan');
    expect(row.error).toBeNull();
    expect(row.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'packed' } } }]);
  });

  it('NATS: the user a guard put on the context wins over a user in the payload; no request id header gives a new one', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await send(SUBJECTS.update, { id: order.id, status: 'x', user: { id: 2, email: 'bob@example.com' } }, { authorization: 'Bearer alice-token' });
    const [row] = await t.rows();
    expect(row).toMatchObject({ actorType: 'user', actorId: '1', actorDisplay: 'alice@example.com', source: 'rpc' });
    expect(row!.requestId).toMatch(UUID_V7);
  });

  it('NATS: no user anywhere is anonymous', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await send(SUBJECTS.update, { id: order.id, status: 'y' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actorType: 'anonymous', actorId: null });
  });

  it('NATS: a handler that throws gives one failure row; the client gets the RPC error as usual', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const error = await send(SUBJECTS.pay, { id: order.id }, { 'x-request-id': 'nats-req-fail' }).catch((e: unknown) => e);
    expect(error).toEqual({ status: 'error', message: `Order ${order.id} is already paid` });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.paid',
      outcome: 'failure',
      kind: 'intent',
      source: 'rpc',
      method: 'NATS',
      route: SUBJECTS.pay,
      requestId: 'nats-req-fail',
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'RpcException' });
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('paid');
  });

  it('NATS: an @Audited service method called from a handler keeps source rpc; each event has its own changes', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    expect(await send(SUBJECTS.close, { id: order.id, user: { id: 1, email: 'alice@example.com' } }, { 'x-request-id': 'nats-close' })).toEqual({
      closed: order.id,
    });
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const byAction = Object.fromEntries(rows.map((row) => [row.action, row]));
    expect(byAction['order.archived']).toMatchObject({ kind: 'intent', source: 'rpc', actorId: '1', requestId: 'nats-close', method: 'NATS', route: SUBJECTS.close });
    expect(byAction['order.archived']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'paid', to: 'archived' } } },
    ]);
    expect(byAction['order.closed']).toMatchObject({ kind: 'intent', source: 'rpc', actorId: '1', requestId: 'nats-close' });
    expect(byAction['order.closed']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'closing' } } },
    ]);
  });

  it('NATS: an unaudited handler’s change is one fallback row attributed to rpc', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await send(SUBJECTS.note, { id: order.id, note: 'n1', user: { id: 2, email: 'bob@example.com' } }, { 'x-request-id': 'nats-note' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.updated',
      kind: 'change',
      source: 'rpc',
      actorId: '2',
      method: 'NATS',
      route: SUBJECTS.note,
      requestId: 'nats-note',
      targetType: 'Order',
      targetId: String(order.id),
    });
  });

  it('NATS: a burst of messages from different users: every row names its own actor and request', async () => {
    const list = await t.seed(() => orders().save(Array.from({ length: 20 }, () => ({ status: 'new' }))));
    await Promise.all(
      list.map((order, i) =>
        send(SUBJECTS.update, { id: order.id, status: `s${i}`, user: { id: 100 + i, email: `u${i}@x.io` } }, { 'x-request-id': `nats-c-${i}` }),
      ),
    );
    const rows = await t.rows();
    const intents = rows.filter((row) => row.kind === 'intent');
    expect(intents).toHaveLength(20);
    list.forEach((order, i) => {
      for (const row of rows.filter((candidate) => candidate.targetId === String(order.id))) {
        expect(row).toMatchObject({ actorId: String(100 + i), requestId: `nats-c-${i}`, source: 'rpc' });
      }
    });
    // TypeORM gives SQLite one connection: a burst of handlers shares one transaction, and a
    // handler's writes commit only when the first handler's transaction does, after the
    // others have ended. Those writes then become fallback rows (still rightly attributed,
    // as checked above). With a connection pool each handler's event claims its own change.
    if (kind === 'sqlite') return;
    expect(rows).toHaveLength(20);
    list.forEach((order, i) => {
      const row = intents.find((candidate) => candidate.targetId === String(order.id));
      expect(row!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: `s${i}` } } }]);
    });
  });

  it('TCP: an object pattern is recorded as JSON; the peer address is the IP; a request id is generated', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    expect(await firstValueFrom(tcp.send(CLOSE_COMMAND, { id: order.id, user: { id: 1, email: 'alice@example.com' } }))).toEqual({ closed: order.id });
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const closed = rows.find((row) => row.action === 'order.closed')!;
    expect(closed).toMatchObject({ kind: 'intent', source: 'rpc', actorId: '1', method: 'TCP', route: '{"cmd":"order.close","v":1}', ip: '127.0.0.1' });
    expect(closed.requestId).toMatch(UUID_V7);
    expect(rows.find((row) => row.action === 'order.archived')).toMatchObject({ source: 'rpc', method: 'TCP', requestId: closed.requestId });
  });

  // Packet metadata (ClientProxy.setOnDispatchHook, TcpContext.getMetadata) arrived with NestJS 12.
  it.skipIf(typeof (TcpContext.prototype as { getMetadata?: unknown }).getMetadata !== 'function')('TCP: a request id and a token in the packet metadata are used', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    client.setOnDispatchHook((packet) => Object.assign(packet, { metadata: { 'x-request-id': 'tcp-req-7', authorization: 'Bearer bob-token' } }));
    try {
      await firstValueFrom(client.send(SUBJECTS.update, { id: order.id, status: 'tcp' }));
    } finally {
      await client.close();
    }
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ source: 'rpc', method: 'TCP', route: SUBJECTS.update, requestId: 'tcp-req-7', actorId: '2' });
  });
});

describe.skipIf(!natsUp).each(kinds)('a standalone NATS microservice on %s', (kind) => {
  let db: TestDatabase;
  let app: INestMicroservice;
  let dataSource: DataSource;
  let nats: ClientProxy;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    @Module({
      imports: [
        TypeOrmModule.forRoot({
          ...db.options,
          entities: [Order, Customer, ...AuditEntities],
          migrations: AuditMigrations,
          migrationsRun: true,
          synchronize: true,
          logging: false,
        } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        TypeOrmModule.forFeature([Order]),
        AuditModule.forRoot(),
      ],
      controllers: [OrderMessagesController],
      providers: [OrderArchiver, RpcTokenGuard],
    })
    class OrdersServiceModule {}
    app = await NestFactory.createMicroservice(OrdersServiceModule, {
      transport: Transport.NATS,
      options: { servers: [NATS_URL] },
      logger: ['error', 'warn'],
    });
    await app.listen();
    dataSource = app.get<DataSource>(getDataSourceToken());
    nats = ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [NATS_URL] } });
    await nats.connect();
  });
  afterAll(async () => {
    await nats?.close();
    await app?.close();
    await db?.drop();
  });

  it('an @Audited handler and the @Audited service method it calls: one row each, source rpc, their own changes', async () => {
    const order = await dataSource.getRepository(Order).save({ status: 'paid' });
    await clearAuditLog(dataSource);
    await natsSend(nats, SUBJECTS.close, { id: order.id, user: { id: 7, email: 'svc@example.com' } }, { 'x-request-id': 'standalone-1' });
    const rows = await dataSource.getRepository(AuditLogEntity).find({ order: { id: 'ASC' } });
    expect(rows).toHaveLength(2);
    const byAction = Object.fromEntries(rows.map((row) => [row.action, row]));
    for (const action of ['order.closed', 'order.archived']) {
      expect(byAction[action]).toMatchObject({ kind: 'intent', outcome: 'success', source: 'rpc', actorId: '7', method: 'NATS', route: SUBJECTS.close, requestId: 'standalone-1' });
    }
    expect(byAction['order.closed']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'closing' } } },
    ]);
    expect(byAction['order.archived']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'paid', to: 'archived' } } },
    ]);
  });
});
