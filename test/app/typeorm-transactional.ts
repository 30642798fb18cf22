import { Body, Controller, Injectable, Param, ParseIntPipe, Patch, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, type DataSourceOptions, type Repository } from 'typeorm';
import { addTransactionalDataSource, deleteDataSourceByName, Propagation, runOnTransactionCommit, Transactional } from 'typeorm-transactional';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';
import { OrderRefused, refusedAs409, TransactionalOrderNotes, TransactionalOrdersController, transactionalOrderService } from './transaction-library-orders.js';

export { IMPORTER, OrderRefused } from './transaction-library-orders.js';

/**
 * `TypeOrmModule.forRootAsync`'s `dataSourceFactory` as typeorm-transactional's
 * documentation writes it. The library keeps its data sources by name, for the process:
 * call {@link forgetTransactionalDataSource} once the app is closed.
 */
export const transactionalDataSource = (options: DataSourceOptions): Promise<DataSource> => Promise.resolve(addTransactionalDataSource(new DataSource(options)));

/** Lets the next app register its data source under the default name. */
export const forgetTransactionalDataSource = (): void => void deleteDataSourceByName('default');

/** A provider whose `@Audited` method writes through the injected repository (in the caller's transaction, if any). */
@Injectable()
export class TxOrderNotes extends TransactionalOrderNotes {
  constructor(@InjectRepository(Order) protected override readonly orders: Repository<Order>) {
    super();
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
 * transaction's manager). The library runs NESTED as a transaction of its own too, on
 * another connection: its NESTED transaction writes the other order.
 */
@Injectable()
export class TxOrderService extends transactionalOrderService({
  required: () => Transactional(),
  requiresNew: () => Transactional({ propagation: Propagation.REQUIRES_NEW }),
  nested: () => Transactional({ propagation: Propagation.NESTED }),
  nestedWrites: 'other',
}) {
  constructor(
    @InjectRepository(Order) override readonly orders: Repository<Order>,
    @InjectDataSource() private readonly dataSource: DataSource,
    override readonly audit: AuditService,
    override readonly notes: TxOrderNotes,
  ) {
    super();
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
}

/** Routes that reach the database only through `TxOrderService`'s transactional methods. */
@Controller('tt/orders')
@UseGuards(TokenGuard)
export class TxOrdersController extends TransactionalOrdersController {
  constructor(protected override readonly service: TxOrderService) {
    super(service);
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
    await refusedAs409(() => this.service.rawNote(id, body.note, body.refuse === true));
    return { id };
  }

  @Patch(':id/raw-outside')
  @Audited('order.updated')
  async updateRawOutside(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.service.rawNoteOutside(id, body.note);
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
