import {
  Body,
  ConflictException,
  Controller,
  Injectable,
  Post,
  SetMetadata,
  UseGuards,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { APP_INTERCEPTOR, Reflector } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import { mergeMap, type Observable } from 'rxjs';
import type { DataSource, EntityManager } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, type AuditLogEntity } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { Transactional, TransactionalInterceptor, TransactionManager } from '../app/transactional.interceptor.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HANDLER_MS = 400;
/** How long the app's interceptors work after the handler. */
const OUTER_MS = 300;
const ALICE = { authorization: 'Bearer alice-token' };

const REJECT_AFTER = 'outer:reject-after';
const TOUCH_AFTER = 'outer:touch-after';

/** An app-level interceptor that turns a handler's result into a 409 after an asynchronous check. */
@Injectable()
class RejectAfterInterceptor implements NestInterceptor {
  constructor(private readonly reflector: Reflector) {}
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.reflector.get<boolean | undefined>(REJECT_AFTER, ctx.getHandler())) return next.handle();
    return next.handle().pipe(
      mergeMap(async () => {
        await sleep(OUTER_MS); // e.g. a quota service asked after the handler
        throw new ConflictException('rejected after the handler');
      }),
    );
  }
}

/** An app-level interceptor that, after the handler, saves one more row for the request (an outbox row, a last-seen stamp). */
@Injectable()
class TouchAfterInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.reflector.get<boolean | undefined>(TOUCH_AFTER, ctx.getHandler())) return next.handle();
    return next.handle().pipe(
      mergeMap(async (result: { note: string }) => {
        await sleep(OUTER_MS); // e.g. after a call to another service
        await this.dataSource.getRepository(Order).save({ status: 'touched', note: `${result.note}-touch` });
        return result;
      }),
    );
  }
}

@Controller('outer/disconnect')
@UseGuards(TokenGuard)
class SlowController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post('tx-refused')
  @Transactional({ failAfterHandler: true })
  @Audited('order.created', { target: ({ result }) => result as Order })
  async txRefused(@TransactionManager() manager: EntityManager, @Body() body: { note: string }): Promise<Order> {
    await sleep(HANDLER_MS);
    return manager.save(Order, manager.create(Order, { status: 'tx', note: body.note }));
  }

  @Post('rejected')
  @SetMetadata(REJECT_AFTER, true)
  @Audited('order.created', { target: ({ result }) => result as Order })
  async rejected(@Body() body: { note: string }): Promise<Order> {
    await sleep(HANDLER_MS);
    return this.dataSource.getRepository(Order).save({ status: 'plain', note: body.note });
  }

  @Post('touched')
  @SetMetadata(TOUCH_AFTER, true)
  @Audited('order.created', { target: ({ result }) => result as Order })
  async touched(@Body() body: { note: string }): Promise<Order> {
    await sleep(HANDLER_MS);
    return this.dataSource.getRepository(Order).save({ status: 'plain', note: body.note });
  }
}

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

/** When the client gives up: never, while the handler runs, or after it while the app's interceptor works. */
type Leave = false | 'handler' | 'outer';

/**
 * A client that goes away while a (non-`@Res()`) route handler runs, in an app whose own
 * `APP_INTERCEPTOR` acts after the handler: what is recorded must not depend on whether
 * the client waited for the answer.
 */
describe.each(combos)('a client leaving during a handler wrapped by an app-level interceptor, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      // After a request it aborted, fetch opens a connection it sends nothing on and keeps it
      // for the server's keep-alive time (Fastify's: 72 s), which the close would wait for.
      fastify: { forceCloseConnections: true },
      controllers: [SlowController],
      providers: [
        { provide: APP_INTERCEPTOR, useClass: TransactionalInterceptor },
        { provide: APP_INTERCEPTOR, useClass: RejectAfterInterceptor },
        { provide: APP_INTERCEPTOR, useClass: TouchAfterInterceptor },
      ],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  /** Sends the request; `leave`: the client gives up while the handler runs, or after it while the app's interceptor works. */
  const send = async (path: string, note: string, requestId: string, leave: Leave): Promise<number | undefined> => {
    const response = await t
      .request(path, {
        method: 'POST',
        json: { note },
        headers: { ...ALICE, 'x-request-id': requestId },
        ...(leave ? { signal: AbortSignal.timeout(leave === 'handler' ? HANDLER_MS / 4 : HANDLER_MS + OUTER_MS / 2) } : {}),
      })
      .catch(() => undefined);
    return response?.status;
  };

  /** The rows of `requestId` once stored, and a while more for anything stored late. */
  const recorded = async (requestId: string): Promise<AuditLogEntity[]> => {
    const of = async () => (await t.rows()).filter((row) => row.requestId === requestId || row.context?.['originRequestId'] === requestId);
    for (let i = 0; i < 100 && (await of()).length === 0; i++) await sleep(50);
    await sleep(HANDLER_MS + OUTER_MS + 500);
    return of();
  };

  for (const leave of [false, 'handler', 'outer'] as const) {
    const who = leave === 'handler' ? 'a client that left during the handler' : leave ? 'a client that left after it' : 'a client that waits';

    it(`the outer transaction rolls back after the handler (${who}): one failure intent, nothing of the rolled-back change`, async () => {
      const note = `outer-tx-${kind}-${adapter}-${leave}`;
      const requestId = `outer-tx-${kind}-${adapter}-${leave}`;
      const status = await send('/outer/disconnect/tx-refused', note, requestId, leave);
      if (!leave) expect(status).toBe(500);
      const rows = await recorded(requestId);
      expect(await t.dataSource.getRepository(Order).findOneBy({ note })).toBeNull();
      expect(rows.map((row) => [row.action, row.outcome, row.actorType, row.actorId])).toEqual([['order.created', 'failure', 'user', '1']]);
      expect(rows[0]!.changes).toEqual([]);
    });

    it(`an outer interceptor maps the result to a 409 (${who}): one failure intent with status 409`, async () => {
      const note = `outer-409-${kind}-${adapter}-${leave}`;
      const requestId = `outer-409-${kind}-${adapter}-${leave}`;
      const status = await send('/outer/disconnect/rejected', note, requestId, leave);
      if (!leave) expect(status).toBe(409);
      const rows = await recorded(requestId);
      expect(rows.map((row) => [row.action, row.outcome, row.actorType, row.actorId])).toEqual([['order.created', 'failure', 'user', '1']]);
      expect(rows[0]!.error).toMatchObject({ status: 409 });
    });

    it(`an outer interceptor saves after the handler (${who}): its change is the request’s, not a system change`, async () => {
      const note = `outer-touch-${kind}-${adapter}-${leave}`;
      const requestId = `outer-touch-${kind}-${adapter}-${leave}`;
      const status = await send('/outer/disconnect/touched', note, requestId, leave);
      if (!leave) expect(status).toBe(201);
      const rows = await recorded(requestId);
      const touched = await t.dataSource.getRepository(Order).findOneByOrFail({ note: `${note}-touch` });
      expect(rows.every((row) => row.actorType === 'user' && row.actorId === '1'), JSON.stringify(rows.map((r) => [r.action, r.actorType, r.kind]))).toBe(true);
      expect(rows.flatMap((row) => row.changes ?? []).map((change) => change.id)).toContain(String(touched.id));
    });
  }
});
