import { Body, ConflictException, Controller, Injectable, Param, ParseIntPipe, Patch, Post, UseGuards } from '@nestjs/common';
import { ClsPluginTransactional, Propagation, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { getDataSourceToken } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/**
 * An app's transactions through `@nestjs-cls/transactional` and its TypeORM adapter: the
 * way its documentation sets it up (the CLS middleware mounted, the plugin bound to the
 * default data source).
 */
export const clsTransactionalModule = () =>
  ClsModule.forRoot({
    global: true,
    middleware: { mount: true },
    plugins: [new ClsPluginTransactional({ adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: getDataSourceToken() }) })],
  });

/** What a service method refuses after it wrote: its transaction rolls back. */
export class OrderRefused extends Error {}

/** The service account `runAs` work runs as. */
export const IMPORTER = { type: 'service', id: 'importer' } as const;

/** A provider whose `@Audited` methods work through `TransactionHost.tx` (in the caller's transaction, if any). */
@Injectable()
export class ClsOrderNotes {
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {}

  @Audited('order.noted')
  async note(id: number, note: string): Promise<void> {
    await this.txHost.tx.getRepository(Order).update({ id }, { note });
  }

  /** Reads only: its unit changes nothing. */
  @Audited('order.checked', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async check(id: number): Promise<void> {
    await this.txHost.tx.getRepository(Order).findOneByOrFail({ id });
  }
}

/** A service whose methods run in transactions `@Transactional()` opens and writes through `TransactionHost.tx`. */
@Injectable()
export class ClsOrderService {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly audit: AuditService,
    private readonly notes: ClsOrderNotes,
  ) {}

  private get orders() {
    return this.txHost.tx.getRepository(Order);
  }

  @Transactional()
  async setStatus(id: number, status: string): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id });
    order.status = status;
    return this.orders.save(order);
  }

  /** Two writes of one order in one transaction (a save and an update by criteria): one net change. */
  @Transactional()
  async setStatusAndTotal(id: number, status: string, total: number): Promise<void> {
    await this.setStatus(id, status); // Required: joins this transaction
    await this.orders.update({ id }, { total });
  }

  /** Writes, then refuses: the transaction rolls back. */
  @Transactional()
  async setStatusThenRefuse(id: number, status: string): Promise<never> {
    await this.setStatus(id, status);
    throw new OrderRefused(`order ${id} refused after its status was set to ${status}`);
  }

  @Transactional(Propagation.RequiresNew)
  async noteInNewTransaction(id: number, note: string): Promise<void> {
    await this.orders.update({ id }, { note });
  }

  @Transactional(Propagation.Nested)
  async noteNestedThenRefuse(id: number, note: string): Promise<never> {
    await this.orders.update({ id }, { note });
    throw new OrderRefused(`note ${note} refused`);
  }

  /**
   * Sets the status of `id` and the note of `other` in a transaction of its own
   * (RequiresNew, committed first), then a nested transaction that sets a note of `id` and
   * rolls back to its savepoint; finally refuses when `refuse`, rolling the outer status
   * back too.
   */
  @Transactional()
  async propagations(id: number, other: number, label: string, refuse: boolean): Promise<void> {
    await this.setStatus(id, `outer-${label}`);
    await this.noteInNewTransaction(other, `new-${label}`);
    await this.noteNestedThenRefuse(id, `nested-${label}`).catch((error: unknown) => {
      if (!(error instanceof OrderRefused)) throw error;
    });
    if (refuse) throw new OrderRefused(`propagations ${label} refused`);
  }

  /** A manual event inside the transaction, then the same write: both commit, or neither. */
  @Transactional()
  async importWithLog(note: string, refuse: boolean): Promise<Order> {
    const order = await this.orders.save(this.orders.create({ status: 'imported', note }));
    await this.audit.log({ action: 'order.imported', target: order, context: { note } });
    if (refuse) throw new OrderRefused(`import ${note} refused`);
    return order;
  }

  /** The status in this transaction, the note through an `@Audited` provider method in it; refused after both when `refuse`. */
  @Transactional()
  async setStatusAndNote(id: number, status: string, note: string, refuse: boolean): Promise<void> {
    await this.setStatus(id, status);
    await this.notes.note(id, note);
    if (refuse) throw new OrderRefused(`order ${id} refused after its note`);
  }

  /** An `@Audited` check (it changes nothing) in this transaction, which then rolls back. */
  @Transactional()
  async checkThenRefuse(id: number): Promise<never> {
    await this.notes.check(id);
    throw new OrderRefused(`order ${id} refused after its check`);
  }

  /** `runAs` work that only logs, in this transaction, which then rolls back. */
  @Transactional()
  async runAsThenRefuse(id: number): Promise<never> {
    await this.audit.runAs(IMPORTER, () => this.audit.log({ action: 'order.looked-at', target: { type: 'order', id: String(id) } }));
    throw new OrderRefused(`order ${id} refused after it was looked at`);
  }

  @Transactional()
  async create(note: string): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'new', note }));
  }
}

/** Routes that reach the database only through `ClsOrderService`'s transactional methods. */
@Controller('cls/orders')
@UseGuards(TokenGuard)
export class ClsOrdersController {
  constructor(private readonly service: ClsOrderService) {}

  @Patch(':id')
  @Audited('order.updated')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; total?: number }): Promise<{ id: number }> {
    if (body.total === undefined) await this.service.setStatus(id, body.status);
    else await this.service.setStatusAndTotal(id, body.status, body.total);
    return { id };
  }

  /** The service's transaction rolls back and the handler lets its error through (mapped to a 409). */
  @Patch(':id/refused')
  @Audited('order.updated')
  async updateRefused(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<never> {
    try {
      return await this.service.setStatusThenRefuse(id, body.status);
    } catch (error) {
      if (error instanceof OrderRefused) throw new ConflictException(error.message);
      throw error;
    }
  }

  /** The service's transaction rolls back; the handler catches the error and succeeds. */
  @Patch(':id/refused-caught')
  @Audited('order.updated')
  async updateRefusedCaught(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<{ refused: true }> {
    await this.service.setStatusThenRefuse(id, body.status).catch((error: unknown) => {
      if (!(error instanceof OrderRefused)) throw error;
    });
    return { refused: true };
  }

  /** A committed transaction, then the handler throws. */
  @Patch(':id/then-fail')
  @Audited('order.updated')
  async updateThenFail(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<never> {
    await this.service.setStatus(id, body.status);
    throw new ConflictException(`order ${id} updated, then refused`);
  }

  @Patch(':id/propagations/:other')
  @Audited('order.updated')
  async propagations(
    @Param('id', ParseIntPipe) id: number,
    @Param('other', ParseIntPipe) other: number,
    @Body() body: { label: string; refuse?: boolean },
  ): Promise<{ id: number }> {
    try {
      await this.service.propagations(id, other, body.label, body.refuse === true);
    } catch (error) {
      if (error instanceof OrderRefused) throw new ConflictException(error.message);
      throw error;
    }
    return { id };
  }

  @Patch(':id/noted')
  @Audited('order.updated')
  async updateNoted(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; note: string; refuse?: boolean }): Promise<{ id: number }> {
    try {
      await this.service.setStatusAndNote(id, body.status, body.note, body.refuse === true);
    } catch (error) {
      if (error instanceof OrderRefused) throw new ConflictException(error.message);
      throw error;
    }
    return { id };
  }

  /** Not audited: the change is recorded as a fallback `change` event of the request. */
  @Patch(':id/plain')
  async updatePlain(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<{ id: number }> {
    await this.service.setStatus(id, body.status);
    return { id };
  }

  /** `@Transactional()` and `@Audited()` on the handler itself. */
  @Post()
  @Audited('order.created')
  @Transactional()
  async create(@Body() body: { note: string }): Promise<Order> {
    return this.service.create(body.note);
  }
}
