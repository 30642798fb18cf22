import { request as httpRequest } from 'node:http';
import { Body, Controller, Injectable, Module, Post, type OnApplicationShutdown, type MiddlewareConsumer, type NestMiddleware, type NestModule } from '@nestjs/common';
import { InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { Audited, AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the middleware is waiting for, and what it did, for the request under test. */
let gate: { open: () => void; opened: Promise<void>; saved?: Promise<void> };
let reached: () => void = () => undefined;
const newGate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gate = { open, opened };
};

/**
 * An app middleware that waits (on another service, say), then records the request in a
 * table of its own (as an API-key middleware notes the key's last use) before passing it on.
 */
@Injectable()
class NotingMiddleware implements NestMiddleware {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  use(request: { headers: Record<string, string | string[] | undefined> }, _response: unknown, next: () => void): void {
    const requestId = String(request.headers['x-request-id']);
    reached();
    gate.saved = gate.opened.then(async () => {
      await this.orders.save(this.orders.create({ status: 'noted', note: `noted-${requestId}` }));
      next();
    });
  }
}

@Controller('noted')
class NotedController {
  @Post()
  @Audited('thing.noted')
  create(@Body() body: { note: string }): { note: string } {
    return body;
  }
}

/**
 * The app's own drain at shutdown (after the module's shutdown, before TypeORM closes the
 * database): waits for the middleware to finish, then looks at the audit trail.
 */
@Injectable()
class Drain implements OnApplicationShutdown {
  static rows: AuditLogEntity[] | undefined;
  static notes: string[] = [];
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  async onApplicationShutdown(): Promise<void> {
    await gate.saved;
    await sleep(1_000); // anything stored in the background by then
    const manager = this.orders.manager;
    Drain.rows = await manager.getRepository(AuditLogEntity).find();
    Drain.notes = (await this.orders.find()).map((order) => order.note ?? '');
  }
}

@Module({ imports: [TypeOrmModule.forFeature([Order])], providers: [NotingMiddleware, Drain] })
class NotingModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(NotingMiddleware).forRoutes(NotedController);
  }
}

/**
 * On Fastify, a request whose client left while it was in a middleware is never routed
 * (Fastify reads the body after the middleware). The shutdown settles such a request's unit
 * without waiting for it — but only once the framework has dropped it: a middleware still
 * at work is part of the request, and what it commits is the request's, not late work.
 */
describe.each(databases())('a client that left while an app middleware was at work, then a shutdown, on %s over fastify', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('what the middleware commits during the shutdown is recorded as the request’s, once', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'fastify', controllers: [NotedController], imports: [NotingModule] });
    const app = t;
    newGate();
    Drain.rows = undefined;
    const requestId = `noted-left-${kind}`;
    const left = new Promise<void>((resolve) => {
      const body = JSON.stringify({ note: 'x' });
      const request = httpRequest(`${app.url}/noted`, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId },
      });
      request.on('error', () => resolve());
      request.on('close', () => resolve());
      reached = () => request.destroy();
      request.end(body);
    });
    await left;
    await sleep(200); // the app has seen the client leave

    // The service the middleware waits for answers while the app is shutting down.
    t = undefined;
    const started = Date.now();
    setTimeout(() => gate.open(), 300);
    await app.close();
    expect(Date.now() - started, 'app.close() returned within seconds').toBeLessThan(8_000);

    expect(Drain.notes).toEqual([`noted-${requestId}`]);
    const rows = ((Drain.rows as AuditLogEntity[] | undefined) ?? []).filter((row) => row.requestId === requestId || row.context?.['originRequestId'] === requestId);
    expect(rows.map((row) => ({ requestId: row.requestId, source: row.source, actor: row.actorType, changes: (row.changes ?? []).map((change) => [change.entity, change.operation]) }))).toEqual([
      { requestId, source: 'http', actor: 'anonymous', changes: [['Order', 'insert']] },
    ]);
  });
});
