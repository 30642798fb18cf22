import * as grpc from '@grpc/grpc-js';
import { Body, Controller, Inject, Post, UseGuards, type OnModuleInit } from '@nestjs/common';
import type { ClientGrpc } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { GRPC_SERVICE, GrpcOrdersController, grpcAppBehindProxy, quoteThenSave, type RawOrdersClient, type OrderReply } from '../app/grpc-orders.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { notesOf } from '../support/changed-notes.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// An HTTP handler that calls a gRPC service through the @grpc/grpc-js client Nest's
// ClientGrpc gives (getClientByServiceName), and saves in the call's callback or in its
// stream's listeners. The channel connects on first use; the calls made while it connects
// start, and answer, in the context of that connection (the first caller's), and a server
// stream's end comes in that context even afterwards. Each save is still claimed by the
// request that made the call (lib/integrations/nest-client-proxy-context.ts).

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ORDERS = 'GRPC_RAW_ORDERS_CLIENT';


@Controller('grpc-raw')
@UseGuards(TokenGuard)
class RawGrpcController implements OnModuleInit {
  private raw!: RawOrdersClient;

  constructor(
    @Inject(ORDERS) private readonly client: ClientGrpc,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {}

  onModuleInit(): void {
    this.raw = this.client.getClientByServiceName<RawOrdersClient>(GRPC_SERVICE);
  }

  /** Unary: the save runs in the call's callback. */
  @Post('quote')
  @Audited('quote.saved')
  quote(@Body() body: { note: string; delay: number }): Promise<{ price: number }> {
    return quoteThenSave(this.raw, this.orders, body);
  }

  /** Server streaming: a copy saved in the 'data' listener for each reply, a tally in the 'end' listener. */
  @Post('notes')
  @Audited('notes.copied')
  notes(@Body() body: { ids: number[]; note: string }): Promise<{ copied: number }> {
    return new Promise((resolve, reject) => {
      const saves: Array<Promise<unknown>> = [];
      const call = this.raw.NoteOrders({ ids: body.ids, note: body.note }, new grpc.Metadata());
      call.on('data', (reply: OrderReply) => saves.push(this.orders.save(this.orders.create({ status: 'copy', total: reply.id, note: body.note }))));
      call.on('error', reject);
      call.on('end', () => {
        saves.push(this.orders.save(this.orders.create({ status: 'tally', total: saves.length, note: body.note })));
        Promise.all(saves).then(() => resolve({ copied: saves.length - 1 }), reject);
      });
    });
  }
}

describe.each(databases())('an HTTP handler saving in the callbacks of a raw gRPC client (getClientByServiceName), on %s', (kind) => {
  let db: TestDatabase;
  // Each test on a fresh app: its requests are the first to use the client's channel,
  // which reaches the server through a proxy that can hold the connection's handshake.
  let t: TestApp;
  let proxy: TcpProxy;
  let close: (() => Promise<void>) | undefined;
  let ids: number[];

  beforeAll(async () => {
    db = await createTestDatabase(kind);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    ({ t, proxy, close } = await grpcAppBehindProxy(db, [RawGrpcController, GrpcOrdersController], ORDERS));
    ids = await t.seed(async () => (await t.dataSource.getRepository(Order).save([{ status: 'new' }, { status: 'new' }])).map((order) => order.id));
  });
  afterEach(async () => {
    await close?.();
  });

  const post = (path: string, token: string, requestId: string, json: unknown) =>
    t.request(`/grpc-raw/${path}`, { method: 'POST', json, headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId } });

  /** Every event but the gRPC server's own (`orders.noted`), by request: who, and the notes of what each saved. */
  const summary = async () =>
    (await t.rows())
      .filter((row) => row.action !== 'orders.noted')
      .map((row) => ({ kind: row.kind, action: row.action, requestId: row.requestId, actor: `${row.actorType}:${row.actorId}`, notes: notesOf(row) }))
      .sort((a, b) => String(a.requestId).localeCompare(String(b.requestId)));

  it('unary, both calls made while the channel connects: bob’s save in his callback is in bob’s event, not in alice’s (whose call opened the channel)', async () => {
    const tag = String(Date.now());
    proxy.freeze(); // the connection's handshake waits
    const alice = post('quote', 'alice-token', `alice-${tag}`, { note: `alice-${tag}`, delay: 500 });
    await sleep(50);
    const bob = post('quote', 'bob-token', `bob-${tag}`, { note: `bob-${tag}`, delay: 5 });
    await sleep(200);
    proxy.thaw();
    // Bob's quote comes back at once, while alice's request still waits for hers.
    expect((await bob).status).toBe(201);
    expect((await alice).status).toBe(201);
    await sleep(100);
    expect(await summary()).toEqual([
      { kind: 'intent', action: 'quote.saved', requestId: `alice-${tag}`, actor: 'user:1', notes: [`alice-${tag}`] },
      { kind: 'intent', action: 'quote.saved', requestId: `bob-${tag}`, actor: 'user:2', notes: [`bob-${tag}`] },
    ]);
  });

  it('server streaming, both calls made while the channel connects: what each saves in its \'data\' and \'end\' listeners is in its own event', async () => {
    const tag = String(Date.now());
    proxy.freeze();
    const alice = post('notes', 'alice-token', `alice-${tag}`, { ids, note: `alice-${tag}` });
    await sleep(50);
    const bob = post('notes', 'bob-token', `bob-${tag}`, { ids, note: `bob-${tag}` });
    await sleep(200);
    proxy.thaw();
    expect((await alice).status).toBe(201);
    expect((await bob).status).toBe(201);
    await sleep(100);
    expect(await summary()).toEqual([
      { kind: 'intent', action: 'notes.copied', requestId: `alice-${tag}`, actor: 'user:1', notes: [`alice-${tag}`, `alice-${tag}`, `alice-${tag}`] },
      { kind: 'intent', action: 'notes.copied', requestId: `bob-${tag}`, actor: 'user:2', notes: [`bob-${tag}`, `bob-${tag}`, `bob-${tag}`] },
    ]);
  });

  it('server streaming, on a connected channel: a later request’s \'end\' listener saves in its own event (not as late work of the request that connected)', async () => {
    const tag = String(Date.now());
    expect((await post('notes', 'alice-token', `first-${tag}`, { ids, note: `first-${tag}` })).status).toBe(201);
    await sleep(100);
    expect((await post('notes', 'bob-token', `later-${tag}`, { ids, note: `later-${tag}` })).status).toBe(201);
    await sleep(200);
    expect(await summary()).toEqual([
      { kind: 'intent', action: 'notes.copied', requestId: `first-${tag}`, actor: 'user:1', notes: [`first-${tag}`, `first-${tag}`, `first-${tag}`] },
      { kind: 'intent', action: 'notes.copied', requestId: `later-${tag}`, actor: 'user:2', notes: [`later-${tag}`, `later-${tag}`, `later-${tag}`] },
    ]);
  });
});
