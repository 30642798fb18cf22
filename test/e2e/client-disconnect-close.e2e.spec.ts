import { request as httpRequest, type ServerResponse } from 'node:http';
import {
  Body,
  Controller,
  Headers,
  Injectable,
  Module,
  Post,
  Res,
  UseGuards,
  type MiddlewareConsumer,
  type NestMiddleware,
  type NestModule,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { Audited, type AuditLogEntity } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** How long the app works on a request once its client has been told to leave. */
const WORK_MS = 500;
/** What `app.close()` may take at most: a shutdown with nothing left to store is quick. */
const CLOSE_MS = 5_000;

/** Where each request is known to be by now (its client leaves then), by request id. */
const reached = new Map<string, () => void>();
const reach = (requestId: string | string[] | undefined) => reached.get(String(requestId))?.();

/** An app middleware that takes its time (as one calling another service would). */
@Injectable()
class SlowMiddleware implements NestMiddleware {
  use(request: { headers: Record<string, string | string[] | undefined> }, _response: unknown, next: () => void): void {
    reach(request.headers['x-request-id']);
    setTimeout(next, WORK_MS);
  }
}

@Controller('client-left/middleware')
@UseGuards(TokenGuard)
class AfterMiddlewareController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.after-middleware', { target: ({ result }) => result as Order })
  create(@Body() body: { note: string }): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
  }
}

@Controller('client-left')
@UseGuards(TokenGuard)
class SlowHandlersController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Saves an order, then takes its time before answering. */
  @Post('handler')
  @Audited('thing.slow-handler', { target: ({ result }) => result as Order })
  async create(@Body() body: { note: string }, @Headers('x-request-id') requestId: string): Promise<Order> {
    const order = await this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
    reach(requestId);
    await sleep(WORK_MS);
    return order;
  }

  /** An `@Res()` handler that takes its time, saves, and answers only a client still there. */
  @Post('res')
  @Audited('thing.slow-res')
  async res(@Body() body: { note: string }, @Headers('x-request-id') requestId: string, @Res() reply: ServerResponse | { raw: ServerResponse }): Promise<void> {
    const response = 'raw' in reply ? reply.raw : reply; // Express gives the response, Fastify its reply
    reach(requestId);
    await sleep(WORK_MS);
    const order = await this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
    if (response.destroyed) return;
    response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(order));
  }
}

@Module({})
class SlowMiddlewareModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(SlowMiddleware).forRoutes(AfterMiddlewareController);
  }
}

/**
 * POSTs `{ note }` as alice with Node's own client, on a connection of its own. With
 * `leave`, the client destroys the connection once the app says the request got there, and
 * the promise resolves then; without, it resolves with the answer's status.
 */
function post(url: string, path: string, note: string, requestId: string, leave?: boolean): Promise<number | undefined> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ note });
    const request = httpRequest(`${url}${path}`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    request.on('response', (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    request.on('error', () => resolve(undefined));
    request.on('close', () => resolve(undefined));
    if (leave) reached.set(requestId, () => request.destroy());
    request.end(body);
  });
}

/** What a row says, less what differs from one request to the other (ids, times). */
const shape = (row: AuditLogEntity) => ({
  action: row.action,
  outcome: row.outcome,
  kind: row.kind,
  actor: [row.actorType, row.actorId],
  source: row.source,
  changes: (row.changes ?? []).map((change) => [change.entity, change.operation]),
});

/** Where the request is when its client leaves. */
const scenarios = [
  { where: 'during its handler', path: '/client-left/handler' },
  { where: 'in a middleware, before its handler', path: '/client-left/middleware' },
  { where: 'during an @Res() handler that then never answers', path: '/client-left/res' },
] as const;

const combos = databases().flatMap((db) => ADAPTERS.flatMap((adapter) => scenarios.map((scenario) => [db, adapter, scenario.where, scenario.path] as const)));

/**
 * A client that closes its connection while its request is being handled, then an
 * `app.close()` once the app is done with the request: the close returns promptly (nothing
 * of the request is left to wait for), and the request's record is the one a client that
 * waited for its answer gets. On Fastify, a request whose client left in a middleware is
 * never routed (Fastify reads the body after the middleware, and a closed connection's
 * body is gone): nothing runs, nothing is recorded, and the close does not wait for it.
 */
describe.each(combos)('app.close() after a client left, on %s over %s, %s', (kind, adapter, _where, path) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('returns within seconds; the request’s record is the one a client that waited gets', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [AfterMiddlewareController, SlowHandlersController], imports: [SlowMiddlewareModule] });
    const app = t;
    const of = async (requestId: string) => (await app.rows()).filter((row) => row.requestId === requestId || row.context?.['originRequestId'] === requestId);

    // A client that waits for its answer: what the request is recorded as.
    const waited = `waited-${kind}-${adapter}${path}`;
    expect(await post(app.url, path, `${waited}-note`, waited)).toBe(201);
    const expected = (await of(waited)).map(shape);
    expect(expected).toEqual([expect.objectContaining({ outcome: 'success', actor: ['user', '1'], changes: [['Order', 'insert']] })]);

    // The same request, whose client leaves while the app works on it.
    const left = `left-${kind}-${adapter}${path}`;
    const note = `${left}-note`;
    await post(app.url, path, note, left, true);
    // Fastify reads the body after the middleware: that of a client gone by then is lost.
    const routed = !(adapter === 'fastify' && path === '/client-left/middleware');
    if (routed) {
      // Its record, once stored (its client is gone: in the background), then a while more for anything stored late.
      for (let i = 0; i < 100 && (await of(left)).length === 0; i++) await sleep(50);
      await sleep(300);
      expect((await of(left)).map(shape)).toEqual(expected);
    } else {
      // Well past the middleware: the request would have been handled by now.
      await sleep(WORK_MS + 1_000);
      expect(await app.dataSource.getRepository(Order).findOneBy({ note })).toBeNull();
      expect(await of(left)).toEqual([]);
    }

    const started = Date.now();
    t = undefined;
    await app.close();
    const took = Date.now() - started;
    expect(took, `app.close() took ${took} ms`).toBeLessThan(CLOSE_MS);
  });
});
