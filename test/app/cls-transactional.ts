import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { ClsPluginTransactional, Propagation, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { getDataSourceToken } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';
import { TransactionalOrderNotes, TransactionalOrdersController, transactionalOrderService } from './transaction-library-orders.js';

export { IMPORTER, OrderRefused } from './transaction-library-orders.js';

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

/** A provider whose `@Audited` methods work through `TransactionHost.tx` (in the caller's transaction, if any). */
@Injectable()
export class ClsOrderNotes extends TransactionalOrderNotes {
  constructor(private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>) {
    super();
  }

  protected override get orders() {
    return this.txHost.tx.getRepository(Order);
  }
}

/**
 * A service whose methods run in transactions `@Transactional()` opens and writes through
 * `TransactionHost.tx`. Its Nested transaction is a savepoint of the outer one, on the
 * outer one's order.
 */
@Injectable()
export class ClsOrderService extends transactionalOrderService({
  required: () => Transactional(),
  requiresNew: () => Transactional(Propagation.RequiresNew),
  nested: () => Transactional(Propagation.Nested),
  nestedWrites: 'same',
}) {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    override readonly audit: AuditService,
    override readonly notes: ClsOrderNotes,
  ) {
    super();
  }

  override get orders() {
    return this.txHost.tx.getRepository(Order);
  }
}

/** Routes that reach the database only through `ClsOrderService`'s transactional methods. */
@Controller('cls/orders')
@UseGuards(TokenGuard)
export class ClsOrdersController extends TransactionalOrdersController {
  constructor(protected override readonly service: ClsOrderService) {
    super(service);
  }

  /** `@Transactional()` and `@Audited()` on the handler itself. */
  @Post()
  @Audited('order.created')
  @Transactional()
  async create(@Body() body: { note: string }): Promise<Order> {
    return this.service.create(body.note);
  }
}
