import { Body, Controller, Injectable, type OnModuleInit, Param, ParseIntPipe, Post } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { Order } from '../app/order.entity.js';
import { appsPerTest } from '../support/test-apps.js';
import { databases } from '../support/test-database.js';

/** `@Audited` on the class of a plain provider: each call of its methods is audited. */
@Audited('report.generated', { target: ({ args }) => (args[0] === undefined ? undefined : { type: 'report', id: args[0] as string }) })
@Injectable()
class ReportJob implements OnModuleInit {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** A lifecycle hook is Nest's, not a call of the class's work: not audited. */
  async onModuleInit(): Promise<void> {
    await this.orders.count();
  }

  async generate(): Promise<void> {
    await this.orders.save({ status: 'reported' });
  }

  /** Calls the class's other methods: still one call, one event. */
  async generateTwice(name: string): Promise<void> {
    await this.generate();
    await this.note(name);
  }

  async note(name: string): Promise<void> {
    await this.orders.save({ status: 'noted', note: name });
  }

  /** Its own `@Audited` wins over the class's. */
  @Audited('report.purged')
  async purge(): Promise<void> {
    await this.orders.delete({ status: 'reported' });
  }
}

/** `@Audited` on a controller class: every handler is audited, a handler's own wins. */
@Audited('orders.touched', { target: ({ args }) => ({ type: 'order', id: args[0] as number }) })
@Controller('touch')
class TouchController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post(':id')
  async touch(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.orders.update(id, { note: body.note });
    return { id };
  }

  @Post(':id/pay')
  @Audited('order.paid')
  async pay(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update(id, { status: 'paid' });
    return { id };
  }
}

describe.each(databases())('@Audited on a class on %s', (kind) => {
  const apps = appsPerTest();

  it('audits each call of a plain provider’s methods with the class’s action, a method’s own @Audited winning', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', providers: [ReportJob] });
    const job = t.app.get(ReportJob);
    await job.generate();
    await job.generateTwice('weekly');
    await job.purge();
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.source, row.targetType, row.targetId])).toEqual([
      ['report.generated', 'intent', 'job', 'Order', expect.any(String)],
      ['report.generated', 'intent', 'job', 'report', 'weekly'],
      ['report.purged', 'intent', 'job', null, null], // two orders deleted: no single target
    ]);
    expect(rows.map((row) => row.changes?.length)).toEqual([1, 2, 2]);
  });

  it('audits every handler of a controller with the class’s action and options, a handler’s own @Audited winning', async () => {
    await apps.database(kind);
    const t = await apps.start({ adapter: 'express', controllers: [TouchController] });
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    expect((await t.request(`/touch/${order.id}`, { method: 'POST', json: { note: 'hello' } })).status).toBe(201);
    expect((await t.request(`/touch/${order.id}/pay`, { method: 'POST', json: {} })).status).toBe(201);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.targetType, row.targetId])).toEqual([
      ['orders.touched', 'intent', 'order', String(order.id)],
      ['order.paid', 'intent', 'Order', String(order.id)],
    ]);
  });
});
