// @AuditSource on a provider method (above or below @Audited) names the source of its
// events, over the class's label and the default `job`.
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditSource } from '../../lib/index.js';
import { Order } from '../app/order.entity.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

@AuditSource('admin')
@Injectable()
class OrderCommands {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @AuditSource('cli')
  @Audited('orders.imported')
  async importAbove(): Promise<void> {
    await this.orders.save({ status: 'imported' });
  }

  @Audited('orders.archived')
  @AuditSource('cli')
  async archiveBelow(): Promise<void> {
    await this.orders.save({ status: 'archived' });
  }

  @Audited('orders.counted')
  async count(): Promise<void> {
    await this.orders.save({ status: 'counted' });
  }
}

@Injectable()
class PlainJob {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @AuditSource('cli')
  @Audited('orders.imported')
  async run(): Promise<void> {
    await this.orders.save({ status: 'imported' });
  }
}

describe.each(databases())('@AuditSource on provider methods on %s', (kind) => {
  const apps = appsPerTest();

  it('the method’s label wins over the class’s, whichever side of @Audited it is; the class’s applies otherwise', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', providers: [OrderCommands, PlainJob] });
    const commands = t.app.get(OrderCommands);
    await commands.importAbove();
    await commands.archiveBelow();
    await commands.count();
    await t.app.get(PlainJob).run();
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.source])).toEqual([
      ['orders.imported', 'intent', 'cli'],
      ['orders.archived', 'intent', 'cli'],
      ['orders.counted', 'intent', 'admin'],
      ['orders.imported', 'intent', 'cli'],
    ]);
  });
});
