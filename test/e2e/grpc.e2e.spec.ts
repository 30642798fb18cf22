import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Body, Controller, Inject, Post, UseGuards, type OnModuleInit } from '@nestjs/common';
import type { ClientGrpc } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, lastValueFrom, type Observable } from 'rxjs';
import { In, type Repository } from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { GRPC_PACKAGE, GRPC_PROTO_PATH, GRPC_SERVICE, GrpcOrdersController, grpcHybridApp, quoteHold, type OrderReply } from '../app/grpc-orders.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { notesOf } from '../support/changed-notes.js';

// gRPC as an RPC transport: a hybrid app's @GrpcMethod handlers (unary and server
// streaming), called by a plain @grpc/grpc-js client that sends its own metadata; and an
// HTTP handler that calls a gRPC service through Nest's ClientGrpc and saves the reply.

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The route of a @GrpcMethod (or, `rx_stream`, @GrpcStreamMethod) handler: its pattern `{ service, rpc, streaming }` as JSON with sorted keys. */
const grpcRoute = (rpc: string, streaming = 'no_stream') => JSON.stringify({ rpc, service: GRPC_SERVICE, streaming });

type UnaryCallback<T> = (error: grpc.ServiceError | null, reply?: T) => void;
interface OrdersServiceClient extends grpc.Client {
  UpdateOrder(request: { id: number; status: string }, metadata: grpc.Metadata, callback: UnaryCallback<OrderReply>): grpc.ClientUnaryCall;
  PayOrder(request: { id: number }, metadata: grpc.Metadata, callback: UnaryCallback<OrderReply>): grpc.ClientUnaryCall;
  NoteOrders(request: { ids: number[]; note: string }, metadata: grpc.Metadata): grpc.ClientReadableStream<OrderReply>;
  CancelOrders(metadata: grpc.Metadata, callback: UnaryCallback<{ cancelled: number }>): grpc.ClientWritableStream<{ id: number }>;
  UpdateOrders(metadata: grpc.Metadata): grpc.ClientDuplexStream<{ id: number; status: string }, OrderReply>;
}

/** A @grpc/grpc-js client of the fixture's service, as another service (not Nest) would call it. */
function ordersClient(url: string): OrdersServiceClient {
  const loaded = grpc.loadPackageDefinition(loadSync(GRPC_PROTO_PATH)) as unknown as {
    audit_test: { orders: { OrdersService: new (address: string, credentials: grpc.ChannelCredentials) => OrdersServiceClient } };
  };
  return new loaded.audit_test.orders.OrdersService(url, grpc.credentials.createInsecure());
}

function metadataOf(headers: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
  return metadata;
}

function unary<Req, Res>(
  client: OrdersServiceClient,
  method: 'UpdateOrder' | 'PayOrder',
  request: Req,
  headers: Record<string, string> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const call = client[method] as unknown as (request: Req, metadata: grpc.Metadata, callback: UnaryCallback<Res>) => unknown;
    call.call(client, request, metadataOf(headers), (error, reply) => (error ? reject(error) : resolve(reply as Res)));
  });
}

/** What a bidirectional call ended with: the replies it got, and its error if it failed. */
interface BidiOutcome {
  replies: OrderReply[];
  error?: grpc.ServiceError;
}

/**
 * A bidirectional UpdateOrders call, as a conversation: each update is sent once the reply
 * to the one before it has come back (so the handler's writes after the first happen
 * after the call has replied), then the client ends its side.
 */
function updateOrders(client: OrdersServiceClient, updates: Array<{ id: number; status: string }>, headers: Record<string, string>): Promise<BidiOutcome> {
  return new Promise((resolve) => {
    const call = client.UpdateOrders(metadataOf(headers));
    const replies: OrderReply[] = [];
    const sendNext = () => {
      const update = updates[replies.length];
      if (update) call.write(update);
      else call.end();
    };
    call.on('data', (reply: OrderReply) => {
      replies.push(reply);
      sendNext();
    });
    call.on('error', (error: grpc.ServiceError) => resolve({ replies, error }));
    call.on('end', () => resolve({ replies }));
    sendNext();
  });
}

describe.each(databases())('gRPC handlers of a hybrid app on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let client: OrdersServiceClient;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // The retry pass runs every recoverAfter / 2: soon after storage is back.
    const app = await grpcHybridApp(db, { controllers: [GrpcOrdersController], grpcPackage: GRPC_PACKAGE, proto: GRPC_PROTO_PATH, audit: { recoverAfter: 1_000 } });
    t = app.t;
    client = ordersClient(app.url);
  });
  afterAll(async () => {
    client?.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const update = (id: number, status: string, headers: Record<string, string> = {}) =>
    unary<{ id: number; status: string }, OrderReply>(client, 'UpdateOrder', { id, status }, headers);

  it('a unary call: one intent event, source rpc, method GRPC, the handler’s pattern, the metadata’s request id and user, the change claimed', async () => {
    const order = await t.seed(() => orders().save({ status: 'new', total: 10 }));
    const reply = await update(order.id, 'packed', { 'x-request-id': 'grpc-req-1', authorization: 'Bearer bob-token' });
    expect(reply).toEqual({ id: order.id, status: 'packed', note: '' });

    // No waiting: the reply comes after the event is stored.
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.updated',
      kind: 'intent',
      outcome: 'success',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('UpdateOrder'),
      // The call's method path, and the peer's address (the client connects to 127.0.0.1).
      path: '/audit_test.orders.OrdersService/UpdateOrder',
      ip: '127.0.0.1',
      requestId: 'grpc-req-1',
      actorType: 'user',
      actorId: '2',
      actorDisplay: 'bob@example.com',
      targetType: 'order',
      targetId: String(order.id),
      error: null,
    });
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'packed' } } }]);
    // Also as AuditService reads it.
    const [found] = (await t.audit.find({ requestId: 'grpc-req-1' })).items;
    expect(found).toMatchObject({ action: 'order.updated', source: 'rpc', request: { method: 'GRPC', requestId: 'grpc-req-1' } });
  });

  it('no request id in the metadata gives a new one; no user is anonymous', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await update(order.id, 'x');
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ kind: 'intent', source: 'rpc', method: 'GRPC', actorType: 'anonymous', actorId: null });
    expect(rows[0]!.requestId).toMatch(UUID_V7);
  });

  it('a call the guard turns away: one failure event with the call\'s request data, nothing changed; the client gets the error', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const refused = await update(order.id, 'stolen', { 'x-request-id': 'grpc-denied-1', authorization: 'Bearer revoked' }).then(
      () => undefined,
      (error: grpc.ServiceError) => error,
    );
    expect(refused?.message).toMatch(/Forbidden resource/);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.updated',
      outcome: 'failure',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('UpdateOrder'),
      path: '/audit_test.orders.OrdersService/UpdateOrder',
      ip: '127.0.0.1',
      requestId: 'grpc-denied-1',
      error: { name: 'RpcException' }, // Nest's guards turn RPC calls away with RpcException('Forbidden resource')
    });
    expect(rows[0]!.changes ?? []).toEqual([]);
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');
  });

  it('a handler that throws a gRPC status: one failure event; the client gets the status and message', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const error = await unary(client, 'PayOrder', { id: order.id }, { 'x-request-id': 'grpc-req-fail', authorization: 'Bearer alice-token' }).catch(
      (e: unknown) => e as grpc.ServiceError,
    );
    expect(error).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: `Order ${order.id} is already paid` });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.paid',
      kind: 'intent',
      outcome: 'failure',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('PayOrder'),
      requestId: 'grpc-req-fail',
      actorId: '1',
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'RpcException' });
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('paid');
  });

  it('a server-streaming @Audited handler: one intent event with every change; the client gets every reply', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    const call = client.NoteOrders({ ids: list.map((order) => order.id), note: 'streamed' }, metadataOf({ 'x-request-id': 'grpc-stream-1' }));
    const replies: OrderReply[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on('data', (reply: OrderReply) => replies.push(reply));
      call.on('error', reject);
      call.on('end', resolve);
    });
    expect(replies).toEqual(list.map((order) => ({ id: order.id, status: 'new', note: 'streamed' })));
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'orders.noted',
      kind: 'intent',
      outcome: 'success',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('NoteOrders'),
      path: '/audit_test.orders.OrdersService/NoteOrders',
      ip: '127.0.0.1',
      requestId: 'grpc-stream-1',
    });
    expect(rows[0]!.changes).toEqual(
      list.map((order) => ({ entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'streamed' } } })),
    );
  });

  it('a client-streaming @Audited handler: one intent event with a change per order the client streamed', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }, { status: 'new' }]));
    const reply = await new Promise<{ cancelled: number }>((resolve, reject) => {
      const call = client.CancelOrders(metadataOf({ 'x-request-id': 'grpc-cstream-1', authorization: 'Bearer bob-token' }), (error, answer) =>
        error ? reject(error) : resolve(answer!),
      );
      for (const order of list) call.write({ id: order.id });
      call.end();
    });
    expect(reply).toEqual({ cancelled: 3 });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'orders.cancelled',
      kind: 'intent',
      outcome: 'success',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('CancelOrders', 'rx_stream'),
      path: '/audit_test.orders.OrdersService/CancelOrders',
      requestId: 'grpc-cstream-1',
      actorId: '2',
    });
    expect(rows[0]!.changes).toEqual(
      list.map((order) => ({ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'cancelled' } } })),
    );
  });

  it('a bidirectional @Audited handler (a reply per message): one intent event with the call\'s request data, claiming every change; no fallback rows', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }, { status: 'new' }]));
    const outcome = await updateOrders(
      client,
      list.map((order, i) => ({ id: order.id, status: `b${i}` })),
      { 'x-request-id': 'grpc-bidi-1', authorization: 'Bearer bob-token' },
    );
    expect(outcome).toEqual({ replies: list.map((order, i) => ({ id: order.id, status: `b${i}`, note: '' })) });
    await sleep(200); // a late row would be written by now
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'orders.updated',
      kind: 'intent',
      outcome: 'success',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('UpdateOrders', 'rx_stream'),
      path: '/audit_test.orders.OrdersService/UpdateOrders',
      ip: '127.0.0.1',
      requestId: 'grpc-bidi-1',
      actorType: 'user',
      actorId: '2',
      actorDisplay: 'bob@example.com',
      error: null,
    });
    expect(rows[0]!.changes).toEqual(
      list.map((order, i) => ({ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: `b${i}` } } })),
    );
  });

  it('a bidirectional handler that fails midway with a gRPC status: one failure event with the changes made before it; the client gets the status', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }, { status: 'new' }]));
    const outcome = await updateOrders(
      client,
      [
        { id: list[0]!.id, status: 'packed' },
        { id: list[1]!.id, status: 'refused' },
        { id: list[2]!.id, status: 'packed' },
      ],
      { 'x-request-id': 'grpc-bidi-fail', authorization: 'Bearer alice-token' },
    );
    expect(outcome.replies).toEqual([{ id: list[0]!.id, status: 'packed', note: '' }]);
    expect(outcome.error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: `Order ${list[1]!.id} cannot be refused` });
    await sleep(200);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'orders.updated',
      kind: 'intent',
      outcome: 'failure',
      source: 'rpc',
      method: 'GRPC',
      route: grpcRoute('UpdateOrders', 'rx_stream'),
      requestId: 'grpc-bidi-fail',
      actorId: '1',
      error: { name: 'RpcException' },
    });
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(list[0]!.id), operation: 'update', fields: { status: { from: 'new', to: 'packed' } } }]);
    expect((await orders().findBy({ id: In(list.map((order) => order.id)) })).map((order) => order.status).sort()).toEqual(['new', 'new', 'packed']);
  });

  it('concurrent bidirectional calls from different users: each event names its own actor and request id, and claims its own changes', async () => {
    const calls = 6;
    const perCall = 3;
    const list = await t.seed(() => orders().save(Array.from({ length: calls * perCall }, () => ({ status: 'new' }))));
    const ordersOf = (i: number) => list.slice(i * perCall, (i + 1) * perCall);
    const outcomes = await Promise.all(
      Array.from({ length: calls }, (_, i) =>
        updateOrders(
          client,
          ordersOf(i).map((order, j) => ({ id: order.id, status: `c${i}-${j}` })),
          { 'x-request-id': `grpc-bidi-c-${i}`, authorization: `Bearer user-${i}` },
        ),
      ),
    );
    outcomes.forEach((outcome, i) => expect(outcome).toEqual({ replies: ordersOf(i).map((order, j) => ({ id: order.id, status: `c${i}-${j}`, note: '' })) }));
    await sleep(200);
    const rows = await t.rows();
    expect(rows.filter((row) => row.kind === 'intent')).toHaveLength(calls);
    for (let i = 0; i < calls; i++) {
      const ids = ordersOf(i).map((order) => String(order.id));
      const claiming = rows.filter((candidate) => candidate.changes?.some((change) => ids.includes(String(change.id))));
      // Every change is in a row (on SQLite too), and each row naming one is the call's.
      expect(claiming.flatMap((row) => row.changes!.map((change) => String(change.id))).filter((id) => ids.includes(id)).sort()).toEqual([...ids].sort());
      for (const row of claiming) {
        expect(row).toMatchObject({ actorId: String(1000 + i), requestId: `grpc-bidi-c-${i}`, source: 'rpc', method: 'GRPC' });
      }
    }
    // SQLite's one connection: a burst's writes may commit in another call's transaction (see below).
    if (kind === 'sqlite') return;
    expect(rows).toHaveLength(calls);
    for (let i = 0; i < calls; i++) {
      const row = rows.find((candidate) => candidate.requestId === `grpc-bidi-c-${i}`);
      expect(row).toMatchObject({ kind: 'intent', outcome: 'success', action: 'orders.updated' });
      expect(row!.changes).toEqual(
        ordersOf(i).map((order, j) => ({ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: `c${i}-${j}` } } })),
      );
    }
  });

  it('concurrent calls from different users: each event names its own actor and request id, and claims its own change', async () => {
    const list = await t.seed(() => orders().save(Array.from({ length: 20 }, () => ({ status: 'new' }))));
    await Promise.all(
      list.map((order, i) => update(order.id, `s${i}`, { 'x-request-id': `grpc-c-${i}`, authorization: `Bearer user-${i}` })),
    );
    const rows = await t.rows();
    const intents = rows.filter((row) => row.kind === 'intent');
    expect(intents).toHaveLength(20);
    list.forEach((order, i) => {
      for (const row of rows.filter((candidate) => candidate.targetId === String(order.id) || candidate.changes?.some((change) => change.id === String(order.id)))) {
        expect(row).toMatchObject({ actorId: String(1000 + i), requestId: `grpc-c-${i}`, source: 'rpc', method: 'GRPC' });
      }
    });
    // TypeORM gives SQLite one connection: a burst of handlers shares one transaction, and a
    // handler's writes commit only when the first handler's transaction does (see
    // microservice.e2e.spec.ts); they then become fallback events, still rightly attributed.
    if (kind === 'sqlite') return;
    expect(rows).toHaveLength(20);
    list.forEach((order, i) => {
      const row = intents.find((candidate) => candidate.targetId === String(order.id));
      expect(row!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: `s${i}` } } }]);
    });
  });

  it('fail-closed: when the event cannot be stored the call errors instead of replying; the change is recorded once storage is back', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await moveAuditLog(t.dataSource, db, true);
    let outcome: { reply: unknown } | { error: unknown };
    try {
      outcome = await update(order.id, 'fail-closed', { 'x-request-id': 'grpc-fc' }).then(
        (reply) => ({ reply }),
        (error: unknown) => ({ error }),
      );
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
    expect(outcome).toEqual({ error: expect.objectContaining({ code: grpc.status.UNKNOWN, details: 'Internal server error' }) });
    // The handler's change committed: the audit trail owes a record of it.
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('fail-closed');
    await expect.poll(async () => (await t.rows()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(1);
    await sleep(500); // nothing is written twice
    const rows = await t.rows();
    expect(rows.map((row) => [row.source, row.method, row.requestId, row.changes?.map((change) => change.id)])).toEqual([
      ['rpc', 'GRPC', 'grpc-fc', [String(order.id)]],
    ]);
  });

  it('fail-closed, a server-streaming call: its replies go out as they come, but when the event cannot be stored the call ends with an error, not OK; the changes are recorded once storage is back', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    await moveAuditLog(t.dataSource, db, true);
    const replies: OrderReply[] = [];
    let error: unknown;
    try {
      const call = client.NoteOrders({ ids: list.map((order) => order.id), note: 'fail-closed' }, metadataOf({ 'x-request-id': 'grpc-stream-fc' }));
      error = await new Promise<unknown>((resolve) => {
        call.on('data', (reply: OrderReply) => replies.push(reply));
        call.on('error', resolve);
        call.on('end', () => resolve(undefined));
      });
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
    expect(replies).toEqual(list.map((order) => ({ id: order.id, status: 'new', note: 'fail-closed' })));
    expect(error).toEqual(expect.objectContaining({ code: grpc.status.UNKNOWN, details: 'Internal server error' }));
    await expect.poll(async () => (await t.rows()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(1);
    await sleep(500); // nothing is written twice
    const rows = await t.rows();
    expect(rows.map((row) => [row.source, row.method, row.requestId, row.changes?.map((change) => change.id)])).toEqual([
      ['rpc', 'GRPC', 'grpc-stream-fc', list.map((order) => String(order.id))],
    ]);
  });

  it('fail-closed, a bidirectional call: each message answered, but when the event cannot be stored the call ends with an error, not OK; the changes are recorded once storage is back', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    await moveAuditLog(t.dataSource, db, true);
    let outcome: BidiOutcome;
    try {
      outcome = await updateOrders(
        client,
        list.map((order) => ({ id: order.id, status: 'fail-closed' })),
        { 'x-request-id': 'grpc-bidi-fc' },
      );
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
    // Each message was answered as it came; the call's end, which waits for its event, fails.
    expect(outcome).toEqual({
      replies: list.map((order) => ({ id: order.id, status: 'fail-closed', note: '' })),
      error: expect.objectContaining({ code: grpc.status.UNKNOWN, details: 'Internal server error' }),
    });
    expect((await orders().findBy({ id: In(list.map((order) => order.id)) })).map((order) => order.status)).toEqual(['fail-closed', 'fail-closed']);
    await expect.poll(async () => (await t.rows()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(1);
    await sleep(500); // nothing is written twice
    const rows = await t.rows();
    expect(rows.map((row) => [row.source, row.method, row.requestId, row.changes?.map((change) => change.id)])).toEqual([
      ['rpc', 'GRPC', 'grpc-bidi-fc', list.map((order) => String(order.id))],
    ]);
  });
});

const QUOTES = 'GRPC_QUOTES_CLIENT';

interface QuotesService {
  quote(request: { delay: number; hold?: boolean }): Observable<{ price: number }>;
}

/**
 * The usual Nest gateway pattern, over gRPC: an HTTP handler asks another service
 * through ClientGrpc (whose channel connects on first use) and saves what it got back.
 */
@Controller('grpc-quotes')
@UseGuards(TokenGuard)
class GrpcQuotesController implements OnModuleInit {
  private quotes!: QuotesService;

  constructor(
    @Inject(QUOTES) private readonly client: ClientGrpc,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {}

  onModuleInit(): void {
    this.quotes = this.client.getService<QuotesService>(GRPC_SERVICE);
  }

  /** Piped: the save runs in the operator after the reply. */
  @Post('piped')
  @Audited('quote.saved')
  piped(@Body() body: { note: string; delay: number; hold?: boolean }): Observable<{ price: number }> {
    return this.quotes.quote({ delay: body.delay, hold: body.hold }).pipe(
      concatMap(async (quote) => {
        await this.orders.save(this.orders.create({ status: 'quoted', total: quote.price, note: body.note }));
        return quote;
      }),
    );
  }

  /** Awaited: the save runs after lastValueFrom resolved. */
  @Post('awaited')
  @Audited('quote.saved')
  async awaited(@Body() body: { note: string; delay: number; hold?: boolean }): Promise<{ price: number }> {
    const quote = await lastValueFrom(this.quotes.quote({ delay: body.delay, hold: body.hold }));
    await this.orders.save(this.orders.create({ status: 'quoted', total: quote.price, note: body.note }));
    return quote;
  }
}


describe.each(databases())('an HTTP handler saving what a ClientGrpc answered, on %s', (kind) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** A fresh app (and so a fresh gRPC channel, opened by the first request that calls it). */
  async function quotesApp(): Promise<TestApp> {
    const { t } = await grpcHybridApp(db, { controllers: [GrpcQuotesController, GrpcOrdersController], grpcPackage: GRPC_PACKAGE, proto: GRPC_PROTO_PATH, client: { token: QUOTES } });
    return t;
  }
  async function closeApp(t: TestApp | undefined): Promise<void> {
    (t?.app.get<ClientGrpc>(QUOTES) as unknown as { close(): void } | undefined)?.close();
    await t?.close();
  }

  describe.each(['piped', 'awaited'])('the reply %s', (style) => {
    // Each test on a fresh app: its requests are the first to use the client's channel.
    let t: TestApp;
    beforeEach(async () => {
      t = await quotesApp();
      await t.clearAudit();
    });
    afterEach(() => closeApp(t));

    const post = (token: string, requestId: string, note: string, delay: number, hold = false) =>
      t.request(`/grpc-quotes/${style}`, { method: 'POST', json: { note, delay, hold }, headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId } });

    const summary = async () =>
      (await t.rows())
        .map((row) => ({ kind: row.kind, action: row.action, requestId: row.requestId, actor: `${row.actorType}:${row.actorId}`, notes: notesOf(row) }))
        .sort((a, b) => String(a.requestId).localeCompare(String(b.requestId)));

    it('bob’s save is in bob’s event, not in alice’s (whose request opened the channel and is still running)', async () => {
      const tag = String(Date.now());
      // Alice's request is the first to use the client (its channel connects now); her quote waits for the test.
      quoteHold.arm();
      const alice = post('alice-token', `alice-${tag}`, `alice-${tag}`, 0, true);
      await quoteHold.reached;
      // Bob's quote comes back at once, while alice's request is still waiting for hers.
      const bob = await post('bob-token', `bob-${tag}`, `bob-${tag}`, 5);
      expect(bob.status).toBe(201);
      quoteHold.release();
      expect((await alice).status).toBe(201);
      await sleep(100);
      expect(await summary()).toEqual([
        { kind: 'intent', action: 'quote.saved', requestId: `alice-${tag}`, actor: 'user:1', notes: [`alice-${tag}`] },
        { kind: 'intent', action: 'quote.saved', requestId: `bob-${tag}`, actor: 'user:2', notes: [`bob-${tag}`] },
      ]);
    });

    it('after the first request ended: a later request’s save is still its own (not late work of the first one)', async () => {
      const tag = String(Date.now());
      expect((await post('alice-token', `first-${tag}`, `first-${tag}`, 5)).status).toBe(201);
      await sleep(100);
      expect((await post('bob-token', `later-${tag}`, `later-${tag}`, 5)).status).toBe(201);
      await sleep(200);
      expect(await summary()).toEqual([
        { kind: 'intent', action: 'quote.saved', requestId: `first-${tag}`, actor: 'user:1', notes: [`first-${tag}`] },
        { kind: 'intent', action: 'quote.saved', requestId: `later-${tag}`, actor: 'user:2', notes: [`later-${tag}`] },
      ]);
    });

    it('concurrent requests of many users, all sent while the channel connects: each save is claimed by its own request’s event', async () => {
      const tag = String(Date.now());
      const count = 8;
      const responses = await Promise.all(
        Array.from({ length: count }, (_, i) => post(`user-${i}`, `many-${i}-${tag}`, `many-${i}-${tag}`, 20 + ((i * 37) % 60))),
      );
      expect(responses.map((response) => response.status)).toEqual(Array.from({ length: count }, () => 201));
      await sleep(200);
      const rows = await summary();
      // SQLite's one connection: a burst's saves may commit in another request's transaction (see above).
      if (kind === 'sqlite') {
        for (const row of rows) for (const note of row.notes) expect(note.split('-')[1], `${note} in ${row.requestId}`).toBe(String(row.requestId).split('-')[1]);
        return;
      }
      expect(rows).toEqual(
        Array.from({ length: count }, (_, i) => ({
          kind: 'intent',
          action: 'quote.saved',
          requestId: `many-${i}-${tag}`,
          actor: `user:${1000 + i}`,
          notes: [`many-${i}-${tag}`],
        })).sort((a, b) => a.requestId.localeCompare(b.requestId)),
      );
    });
  });
});
