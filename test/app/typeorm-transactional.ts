import { Body, ConflictException, Controller, Injectable, Param, ParseIntPipe, Patch, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, type DataSourceOptions, type Repository } from 'typeorm';
import { addTransactionalDataSource, deleteDataSourceByName, Propagation, runOnTransactionCommit, Transactional } from 'typeorm-transactional';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/**
 * `TypeOrmModule.forRootAsync`'s `dataSourceFactory` as typeorm-transactional's
 * documentation writes it. The library keeps its data sources by name, for the process:
 * call {@link forgetTransactionalDataSource} once the app is closed.
 */
export const transactionalDataSource = (options: DataSourceOptions): Promise<DataSource> => Promise.resolve(addTransactionalDataSource(new DataSource(options)));

/** Lets the next app register its data source under the default name. */
export const forgetTransactionalDataSource = (): void => void deleteDataSourceByName('default');

/** The service account `runAs` work runs as. */
export const IMPORTER = { type: 'service', id: 'importer' } as const;

/** What a service method refuses after it wrote: its transaction rolls back. */
export class OrderRefused extends Error {}

/** A provider whose `@Audited` method writes through the injected repository (in the caller's transaction, if any). */
@Injectable()
export class TxOrderNotes {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Audited('order.noted')
  async note(id: number, note: string): Promise<void> {
    await this.orders.update({ id }, { note });
  }

  /** Reads only: its unit changes nothing. */
  @Audited('order.checked', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async check(id: number): Promise<void> {
    await this.orders.findOneByOrFail({ id });
  }

  /** A job: a transaction around its own unit of work. */
  @Transactional()
  @Audited('order.reviewed')
  async review(id: number, refuse: boolean): Promise<void> {
    await this.orders.update({ id }, { status: 'reviewed' });
    if (refuse) throw new OrderRefused(`review of ${id} refused`);
  }
}

/**
 * A service written the way typeorm-transactional is used: `@Transactional()` methods
 * writing through repositories injected as usual (the library hands them the
 * transaction's manager).
 */
@Injectable()
export class TxOrderService {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly notes: TxOrderNotes,
  ) {}

  @Transactional()
  async setStatus(id: number, status: string): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id });
    order.status = status;
    return this.orders.save(order);
  }

  /** Two writes of one order in one transaction (a save and an update by criteria): one net change. */
  @Transactional()
  async setStatusAndTotal(id: number, status: string, total: number): Promise<void> {
    await this.setStatus(id, status); // REQUIRED: joins this transaction
    await this.orders.update({ id }, { total });
  }

  /** Writes, then refuses: the transaction rolls back. */
  @Transactional()
  async setStatusThenRefuse(id: number, status: string): Promise<never> {
    await this.setStatus(id, status);
    throw new OrderRefused(`order ${id} refused after its status was set to ${status}`);
  }

  @Transactional({ propagation: Propagation.REQUIRES_NEW })
  async noteInNewTransaction(id: number, note: string): Promise<void> {
    await this.orders.update({ id }, { note });
  }

  @Transactional({ propagation: Propagation.NESTED })
  async noteNestedThenRefuse(id: number, note: string): Promise<never> {
    await this.orders.update({ id }, { note });
    throw new OrderRefused(`note ${note} refused`);
  }

  /**
   * Sets the status of `id` and the note of `other` in a transaction of its own
   * (REQUIRES_NEW, committed first), then a NESTED one that sets another note of `other`
   * and rolls back; finally refuses when `refuse`, rolling the outer status back too.
   * (The library runs NESTED as a transaction of its own too, on another connection: on
   * `id`, whose row the outer transaction holds locked, it would wait for ever.)
   */
  @Transactional()
  async propagations(id: number, other: number, label: string, refuse: boolean): Promise<void> {
    await this.setStatus(id, `outer-${label}`);
    await this.noteInNewTransaction(other, `new-${label}`);
    await this.noteNestedThenRefuse(other, `nested-${label}`).catch((error: unknown) => {
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

  /**
   * Sets the status, and once the transaction has committed (`runOnTransactionCommit`), a
   * note written outside it. Resolves after both.
   */
  async setStatusThenNoteOnCommit(id: number, status: string, note: string): Promise<void> {
    let noted!: Promise<unknown>;
    await this.setStatusWithCommitHook(id, status, () => (noted = this.orders.update({ id }, { note })));
    // The library runs its commit hooks in a later turn (setImmediate).
    while (!noted) await new Promise((resolve) => setImmediate(resolve));
    await noted;
  }

  @Transactional()
  private async setStatusWithCommitHook(id: number, status: string, onCommit: () => void): Promise<void> {
    runOnTransactionCommit(onCommit);
    await this.setStatus(id, status);
  }

  /** Raw SQL inside the transaction (the library runs `dataSource.query()` on its runner); refused after it when `refuse`. */
  @Transactional()
  async rawNote(id: number, note: string, refuse: boolean): Promise<void> {
    await this.rawNoteOutside(id, note);
    if (refuse) throw new OrderRefused(`raw note ${note} refused`);
  }

  /** Raw SQL through `dataSource.query()`, outside any transaction. */
  async rawNoteOutside(id: number, note: string): Promise<void> {
    const { driver } = this.dataSource;
    const table = this.orders.metadata.tablePath.split('.').map((part) => driver.escape(part)).join('.');
    const placeholder = this.dataSource.options.type === 'postgres' ? '$1' : '?';
    await this.dataSource.query(`UPDATE ${table} SET note = ${placeholder} WHERE id = ${Number(id)}`, [note]);
  }

  @Transactional()
  async create(note: string): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'new', note }));
  }
}

/** Routes that reach the database only through `TxOrderService`'s transactional methods. */
@Controller('tt/orders')
@UseGuards(TokenGuard)
export class TxOrdersController {
  constructor(private readonly service: TxOrderService) {}

  /** Maps `OrderRefused` to a 409. */
  private async refusedAs409<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof OrderRefused) throw new ConflictException(error.message);
      throw error;
    }
  }

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
  updateRefused(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<never> {
    return this.refusedAs409(() => this.service.setStatusThenRefuse(id, body.status));
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
    await this.refusedAs409(() => this.service.propagations(id, other, body.label, body.refuse === true));
    return { id };
  }

  @Patch(':id/noted')
  @Audited('order.updated')
  async updateNoted(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; note: string; refuse?: boolean }): Promise<{ id: number }> {
    await this.refusedAs409(() => this.service.setStatusAndNote(id, body.status, body.note, body.refuse === true));
    return { id };
  }

  @Patch(':id/on-commit')
  @Audited('order.updated')
  async updateOnCommit(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; note: string }): Promise<{ id: number }> {
    await this.service.setStatusThenNoteOnCommit(id, body.status, body.note);
    return { id };
  }

  @Patch(':id/raw')
  @Audited('order.updated')
  async updateRaw(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string; refuse?: boolean }): Promise<{ id: number }> {
    await this.refusedAs409(() => this.service.rawNote(id, body.note, body.refuse === true));
    return { id };
  }

  @Patch(':id/raw-outside')
  @Audited('order.updated')
  async updateRawOutside(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.service.rawNoteOutside(id, body.note);
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
