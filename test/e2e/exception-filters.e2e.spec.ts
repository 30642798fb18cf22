import {
  Body,
  Catch,
  ConflictException,
  Controller,
  Injectable,
  Param,
  ParseIntPipe,
  Patch,
  Post,
  UseFilters,
  UseGuards,
  type ArgumentsHost,
  type CallHandler,
  type ExceptionFilter,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR } from '@nestjs/core';
import { InjectRepository } from '@nestjs/typeorm';
import { from, lastValueFrom, type Observable } from 'rxjs';
import { EntityNotFoundError, type Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** Express's response and Fastify's reply both have `status()` and `send()`. */
type Reply = { status(code: number): { send(body: unknown): void } };

/** The usual mapping of TypeORM's "not found" to a 404. */
@Catch(EntityNotFoundError)
class NotFoundFilter implements ExceptionFilter {
  catch(_error: EntityNotFoundError, host: ArgumentsHost): void {
    host.switchToHttp().getResponse<Reply>().status(404).send({ message: 'No such order' });
  }
}

/** A duplicate submission the app answers as if it had succeeded. */
class AlreadyDone extends Error {}

@Catch(AlreadyDone)
class AlreadyDoneFilter implements ExceptionFilter {
  catch(_error: AlreadyDone, host: ArgumentsHost): void {
    host.switchToHttp().getResponse<Reply>().status(200).send({ alreadyDone: true });
  }
}

@Controller('filtered')
@UseGuards(TokenGuard)
class FilteredController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Patch('orders/:id')
  @UseFilters(NotFoundFilter)
  @Audited('order.noted', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async note(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id });
    order.note = body.note;
    return this.orders.save(order);
  }

  /** Records the submission, then finds it was a duplicate: the filter answers 200. */
  @Post('submissions')
  @UseFilters(AlreadyDoneFilter)
  @Audited('submission.received')
  async submit(@Body() body: { note: string }): Promise<Order> {
    await this.orders.save(this.orders.create({ status: 'submission', note: body.note }));
    throw new AlreadyDone('duplicate submission');
  }
}

/** An app's error for a payment it cannot take, which its global filter answers 422. */
class Unpayable extends Error {}

@Catch(Unpayable)
class UnpayableFilter implements ExceptionFilter {
  catch(error: Unpayable, host: ArgumentsHost): void {
    host.switchToHttp().getResponse<Reply>().status(422).send({ message: error.message });
  }
}

/**
 * An app-level interceptor that lets the handler run, then fails the request with the error
 * the `x-refuse` header names (as a transaction interceptor whose commit fails would).
 */
@Injectable()
class RefuseAfterHandlerInterceptor implements NestInterceptor {
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const refuse = ctx.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-refuse'];
    if (!refuse) return next.handle();
    return from(
      (async () => {
        await lastValueFrom(next.handle(), { defaultValue: undefined });
        if (refuse === 'conflict') throw new ConflictException('refused after the handler');
        if (refuse === 'unpayable') throw new Unpayable('card declined');
        throw new TypeError('commit went wrong');
      })(),
    );
  }
}

@Controller('refused')
class RefusedController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('order.placed')
  async place(@Body() body: { note: string }): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'placed', note: body.note }));
  }
}

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('an exception filter answering for the handler on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [FilteredController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('EntityNotFoundError answered 404 by a filter: a failure with status 404, the status the client got', async () => {
    const response = await t.request('/filtered/orders/987654', { method: 'PATCH', json: { note: 'nobody' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ message: 'No such order' });

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['order.noted', 'intent', 'failure']]);
    expect(rows[0]!.error).toMatchObject({ status: 404 });
  });

  it('an error answered 200 by a filter: the handler failed, so the intent is a failure (with its error) claiming the insert', async () => {
    const response = await t.request('/filtered/submissions', { method: 'POST', json: { note: 'dup' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ alreadyDone: true });
    const order = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'dup' });

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome, row.error])).toEqual([['submission.received', 'intent', 'failure', { name: 'AlreadyDone' }]]);
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(order.id), operation: 'insert' })]);
  });
});

describe.each(combos)('an app-level interceptor failing after the handler succeeded, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      controllers: [RefusedController],
      providers: [
        { provide: APP_INTERCEPTOR, useClass: RefuseAfterHandlerInterceptor },
        { provide: APP_FILTER, useClass: UnpayableFilter },
      ],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const place = (note: string, refuse?: string) =>
    t.request('/refused', { method: 'POST', json: { note }, headers: refuse ? { 'x-refuse': refuse } : {} });

  it('not refused: a success', async () => {
    expect((await place('kept')).status).toBe(201);
    expect((await t.rows()).map((row) => [row.action, row.outcome, row.error])).toEqual([['order.placed', 'success', null]]);
  });

  it('an HttpException: a failure naming its class, status and message, as for one the handler throws', async () => {
    const response = await place('conflict', 'conflict');
    expect(response.status).toBe(409);
    expect(await response.json()).toMatchObject({ message: 'refused after the handler' });
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.outcome, row.error])).toEqual([
      ['order.placed', 'failure', { name: 'ConflictException', status: 409, message: 'refused after the handler' }],
    ]);
  });

  it('an error that is not an HttpException: a failure naming its class, without its message, as for one the handler throws', async () => {
    const response = await place('type', 'type');
    expect(response.status).toBe(500);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.outcome, row.error])).toEqual([['order.placed', 'failure', { name: 'TypeError' }]]);
  });

  it("an error an app-level filter answers 422: a failure naming its class, with the status the client got", async () => {
    const response = await place('unpayable', 'unpayable');
    expect(response.status).toBe(422);
    expect(await response.json()).toEqual({ message: 'card declined' });
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.outcome, row.error])).toEqual([['order.placed', 'failure', { name: 'Unpayable', status: 422 }]]);
  });
});
