import { Body, Controller, Inject, Post, UseGuards } from '@nestjs/common';
import type { ClientGrpc } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { GRPC_SERVICE, GrpcOrdersController, grpcAppBehindProxy, quoteThenSave, type RawOrdersClient } from '../app/grpc-orders.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { notesOf } from '../support/changed-notes.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// The raw @grpc/grpc-js client of a Nest ClientGrpc, and its service (getService()),
// taken in a constructor: before the audit module's init, while ClientGrpcProxy's methods
// are still Nest's own. Vitest runs each file in a process of its own, so this file's
// first app is its process's first, as an app in production is. Their calls still call
// back in the request that made them (lib/integrations/nest-client-proxy-context.ts).

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ORDERS = 'GRPC_RAW_ORDERS_CLIENT';

interface QuotesService {
  quote(request: { delay: number }): Observable<{ price: number }>;
}

@Controller('grpc-raw')
@UseGuards(TokenGuard)
class EarlyRawGrpcController {
  private readonly raw: RawOrdersClient;
  private readonly quotes: QuotesService;

  constructor(
    @Inject(ORDERS) client: ClientGrpc,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {
    this.raw = client.getClientByServiceName<RawOrdersClient>(GRPC_SERVICE);
    this.quotes = client.getService<QuotesService>(GRPC_SERVICE);
  }

  /** Unary: the save runs in the call's callback. */
  @Post('quote')
  @Audited('quote.saved')
  quote(@Body() body: { note: string; delay: number }): Promise<{ price: number }> {
    return quoteThenSave(this.raw, this.orders, body);
  }

  /** Through the service: the save is piped after the reply. */
  @Post('service-quote')
  @Audited('quote.saved')
  serviceQuote(@Body() body: { note: string; delay: number }): Observable<{ price: number }> {
    return this.quotes.quote({ delay: body.delay }).pipe(
      concatMap(async (quote) => {
        await this.orders.save(this.orders.create({ status: 'quoted', total: quote.price, note: body.note }));
        return quote;
      }),
    );
  }
}

describe.each(databases())('an HTTP handler calling a raw gRPC client it took in its constructor, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let proxy: TcpProxy;
  let close: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    ({ t, proxy, close } = await grpcAppBehindProxy(db, [EarlyRawGrpcController, GrpcOrdersController], ORDERS));
  });
  afterEach(async () => {
    await close?.();
  });

  const post = (token: string, requestId: string, json: unknown, path = 'quote') =>
    t.request(`/grpc-raw/${path}`, { method: 'POST', json, headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId } });

  it('calls made while the channel connects: bob’s saves, in his callback and piped after his service call, are in his events, not in alice’s (whose call opened the channel)', async () => {
    const tag = String(Date.now());
    proxy.freeze();
    const alice = post('alice-token', `alice-${tag}`, { note: `alice-${tag}`, delay: 500 });
    await sleep(50);
    const bob = post('bob-token', `bob-${tag}`, { note: `bob-${tag}`, delay: 5 });
    const bobAgain = post('bob-token', `bob2-${tag}`, { note: `bob2-${tag}`, delay: 5 }, 'service-quote');
    await sleep(200);
    proxy.thaw();
    expect((await bob).status).toBe(201);
    expect((await bobAgain).status).toBe(201);
    expect((await alice).status).toBe(201);
    await sleep(100);
    const rows = (await t.rows())
      .map((row) => ({ kind: row.kind, action: row.action, requestId: row.requestId, actor: `${row.actorType}:${row.actorId}`, notes: notesOf(row) }))
      .sort((a, b) => String(a.requestId).localeCompare(String(b.requestId)));
    expect(rows).toEqual([
      { kind: 'intent', action: 'quote.saved', requestId: `alice-${tag}`, actor: 'user:1', notes: [`alice-${tag}`] },
      { kind: 'intent', action: 'quote.saved', requestId: `bob-${tag}`, actor: 'user:2', notes: [`bob-${tag}`] },
      { kind: 'intent', action: 'quote.saved', requestId: `bob2-${tag}`, actor: 'user:2', notes: [`bob2-${tag}`] },
    ]);
  });
});
