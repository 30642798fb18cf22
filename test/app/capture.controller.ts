import { Body, Controller, NotFoundException, Param, ParseIntPipe, Patch, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** Routes that exercise change capture: undecorated writes, transactions, manual claims. */
@Controller('capture')
@UseGuards(TokenGuard)
export class CaptureController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  private async load(id: number): Promise<Order> {
    const order = await this.orders.findOneBy({ id });
    if (!order) throw new NotFoundException();
    return order;
  }

  /** Undecorated: its change becomes a fallback event. */
  @Patch('orders/:id')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<Order> {
    const order = await this.load(id);
    order.status = body.status;
    return this.orders.save(order);
  }

  /** Decorated, saves in a transaction that then fails: nothing of it survives. */
  @Post('orders/:id/pay-in-transaction')
  @Audited('order.paid')
  async payInTransaction(@Param('id', ParseIntPipe) id: number): Promise<never> {
    await this.dataSource.transaction(async (manager) => {
      const order = await manager.findOneByOrFail(Order, { id });
      order.status = 'paid';
      await manager.save(order);
      throw new Error('payment gateway declined');
    });
    throw new Error('unreachable');
  }

  /** Decorated, commits a change, then fails: the failure event carries the committed change. */
  @Post('orders/:id/pay-then-fail')
  @Audited('order.paid')
  async payThenFail(@Param('id', ParseIntPipe) id: number): Promise<never> {
    const order = await this.load(id);
    order.status = 'paid';
    await this.orders.save(order);
    throw new Error('receipt printer on fire');
  }

  /** Undecorated: saves, then a manual event claims the change. */
  @Post('orders/:id/ship')
  async ship(@Param('id', ParseIntPipe) id: number): Promise<Order> {
    const order = await this.load(id);
    order.status = 'shipped';
    await this.orders.save(order);
    await this.audit.log({ action: 'order.shipped', target: order });
    return order;
  }

  /** Undecorated: a manual event first, the change after; still claimed. */
  @Post('orders/:id/ship-later')
  async shipLater(@Param('id', ParseIntPipe) id: number): Promise<Order> {
    const order = await this.load(id);
    await this.audit.log({ action: 'order.shipped', target: { type: 'order', id } });
    order.status = 'shipped';
    return this.orders.save(order);
  }

  /** Decorated, changes two orders: one event claims both. */
  @Post('orders/:a/merge/:b')
  @Audited('order.merged')
  async merge(@Param('a', ParseIntPipe) a: number, @Param('b', ParseIntPipe) b: number): Promise<void> {
    const [first, second] = [await this.load(a), await this.load(b)];
    first.total += second.total;
    second.status = 'merged';
    await this.orders.save([first, second]);
  }
}
