import { Body, Controller, Inject, Post, UseGuards } from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { RequestHold } from '../app/request-hold.js';
import { TokenGuard } from '../app/token.guard.js';
import { freePort } from '../support/broker-probe.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { notesOf } from '../support/changed-notes.js';

// A ClientProxy's connection calls back in the async context of the request that opened
// it; the operators piped after send() run in the context of the request that subscribed
// (lib/integrations/nest-client-proxy-context.ts), so each save is claimed by its own request.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const QUOTES = 'QUOTES_CLIENT';

/** Where a quote asked with `hold` waits for the test. */
const quoteHold = new RequestHold<void>();

/** A pricing service, reached over TCP (here in the same process, as a hybrid app's microservice). */
@Controller()
class QuoteService {
  @MessagePattern({ cmd: 'quote' })
  async quote(@Payload() data: { delay: number; hold?: boolean }): Promise<{ price: number }> {
    if (data.hold) await quoteHold.wait();
    await sleep(data.delay);
    return { price: 42 };
  }
}

/**
 * The usual Nest gateway pattern: an HTTP handler asks another service through a
 * ClientProxy (which connects on first use) and saves what it got back.
 */
@Controller('quotes')
@UseGuards(TokenGuard)
class QuotesController {
  constructor(
    @Inject(QUOTES) private readonly client: ClientProxy,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {}

  @Post()
  @Audited('quote.saved')
  save(@Body() body: { note: string; delay: number; hold?: boolean }): Observable<{ price: number }> {
    return this.client.send<{ price: number }>({ cmd: 'quote' }, { delay: body.delay, hold: body.hold }).pipe(
      concatMap(async (quote) => {
        await this.orders.save(this.orders.create({ status: 'quoted', total: quote.price, note: body.note }));
        return quote;
      }),
    );
  }
}


describe.each(databases())('an HTTP handler saving what a ClientProxy answered, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const port = await freePort();
    t = await createTestApp({
      db,
      adapter: 'express',
      controllers: [QuotesController, QuoteService],
      providers: [{ provide: QUOTES, useFactory: () => ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } }) }],
      configure: async (app) => {
        app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port } }, { inheritAppConfig: true });
        await app.startAllMicroservices();
      },
    });
  });
  afterAll(async () => {
    await t?.app.get<ClientProxy>(QUOTES).close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const post = (token: string, requestId: string, note: string, delay: number, hold = false) =>
    t.request('/quotes', { method: 'POST', json: { note, delay, hold }, headers: { authorization: `Bearer ${token}`, 'x-request-id': requestId } });

  it('bob’s save is in bob’s event, not in alice’s (whose request opened the client’s connection and is still running)', async () => {
    const tag = String(Date.now());
    // Alice's request is the first to use the client (it connects now) and its quote waits for the test.
    quoteHold.arm();
    const alice = post('alice-token', `alice-${tag}`, `alice-${tag}`, 0, true);
    await quoteHold.reached;
    // Bob's quote comes back at once, while alice's request is still waiting for hers.
    const bob = await post('bob-token', `bob-${tag}`, `bob-${tag}`, 5);
    expect(bob.status).toBe(201);
    quoteHold.release();
    expect((await alice).status).toBe(201);

    const rows = await t.rows();
    const summary = rows
      .filter((row) => row.action === 'quote.saved')
      .map((row) => ({ requestId: row.requestId, actor: `${row.actorType}:${row.actorId}`, notes: notesOf(row) }))
      .sort((a, b) => String(a.requestId).localeCompare(String(b.requestId)));
    expect(summary).toEqual([
      { requestId: `alice-${tag}`, actor: 'user:1', notes: [`alice-${tag}`] },
      { requestId: `bob-${tag}`, actor: 'user:2', notes: [`bob-${tag}`] },
    ]);
  });

  it('after the first request ended: a later request’s save is still its own (not late work of the first one)', async () => {
    const tag = String(Date.now());
    // (The client is connected already by the test above when run in order; a fresh one connects now.)
    expect((await post('alice-token', `first-${tag}`, `first-${tag}`, 5)).status).toBe(201);
    await sleep(100);
    expect((await post('bob-token', `later-${tag}`, `later-${tag}`, 5)).status).toBe(201);
    await sleep(200);

    const rows = await t.rows();
    const bobs = rows
      .filter((row) => notesOf(row).includes(`later-${tag}`))
      .map((row) => ({
        action: row.action,
        actor: `${row.actorType}:${row.actorId}`,
        requestId: row.requestId,
        originRequestId: (row.context as Record<string, unknown> | null)?.['originRequestId'],
      }));
    expect(bobs).toEqual([{ action: 'quote.saved', actor: 'user:2', requestId: `later-${tag}`, originRequestId: undefined }]);
  });
});
