import { Controller, Injectable, Param, ParseIntPipe, Post, UseGuards } from '@nestjs/common';
import { Cron, CronExpression } from '@nestjs/schedule';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** A scheduled job: expires stale orders. */
@Injectable()
export class OrderExpiryJob {
  runs = 0;

  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Cron(CronExpression.EVERY_HOUR, { name: 'expire-orders' })
  @Audited('orders.expired')
  async expireStale(): Promise<number> {
    this.runs++;
    const result = await this.orders.update({ status: 'stale' }, { status: 'expired' });
    return result.affected ?? 0;
  }
}

/** A service whose method is audited on its own, whoever calls it. */
@Injectable()
export class OrderArchiver {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly audit: AuditService,
  ) {}

  @Audited('order.archived', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async archive(id: number): Promise<void> {
    await this.orders.update(id, { status: 'archived' });
  }

  /** Queued work: runs as the user who asked for it, with their request id. */
  async notifyLater(actor: { type: string; id?: string }, requestId: string, orderId: number): Promise<void> {
    await this.audit.runAs(actor, () => this.orders.update(orderId, { note: 'customer notified' }), { requestId });
  }
}

@Controller('jobs')
@UseGuards(TokenGuard)
export class JobsController {
  constructor(
    private readonly archiver: OrderArchiver,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {}

  /** A decorated handler calling an @Audited service method: two events, each with its own changes. */
  @Post('orders/:id/close')
  @Audited('order.closed')
  async close(@Param('id', ParseIntPipe) id: number): Promise<void> {
    await this.orders.update(id, { note: 'closing' });
    await this.archiver.archive(id);
  }
}
