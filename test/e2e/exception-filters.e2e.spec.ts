import { Body, Catch, Controller, Param, ParseIntPipe, Patch, Post, UseFilters, UseGuards, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
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
