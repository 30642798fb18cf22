import type { ServerResponse } from 'node:http';
import { Body, ConflictException, Controller, Get, NotFoundException, Param, ParseIntPipe, Patch, Post, Res, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { RequestHold } from './request-hold.js';
import { TokenGuard } from './token.guard.js';

const pause = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 4));

/** Where the `slow` handler waits between its two saves. */
export const slowOrderHold = new RequestHold();

@Controller('orders')
@UseGuards(TokenGuard)
export class OrdersController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly audit: AuditService,
  ) {}

  @Get(':id')
  async get(@Param('id', ParseIntPipe) id: number): Promise<Order> {
    const order = await this.orders.findOneBy({ id });
    if (!order) throw new NotFoundException(`Order ${id} not found`);
    return order;
  }

  @Post()
  @Audited('order.created', { target: ({ result }) => result as Order })
  async create(@Body() body: { total?: number }): Promise<Order> {
    return this.orders.save(this.orders.create({ total: body.total ?? 0 }));
  }

  @Patch(':id')
  @Audited('order.updated', {
    target: ({ params }) => ({ type: 'order', id: params['id']! }),
    reason: ({ request }) => (request?.headers?.['x-reason'] as string | undefined) ?? undefined,
  })
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<Order> {
    const order = await this.get(id);
    order.status = body.status;
    return this.orders.save(order);
  }

  @Post(':id/pay')
  @Audited('order.paid', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async pay(@Param('id', ParseIntPipe) id: number): Promise<Order> {
    const order = await this.get(id);
    if (order.status === 'paid') throw new ConflictException(`Order ${id} is already paid`);
    order.status = 'paid';
    return this.orders.save(order);
  }

  /** Awaits I/O at random points, so that concurrent requests interleave. */
  @Patch(':id/touch')
  @Audited('order.touched', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async touch(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await pause();
    const order = await this.get(id);
    await pause();
    order.note = body.note;
    await this.orders.save(order);
    await pause();
    return { id };
  }

  /** Saves, then takes its time (until `slowOrderHold` releases it) before saving again and answering: a client may give up in between. */
  @Patch(':id/slow')
  @Audited('order.slowly-updated')
  async slow(
    @Param('id', ParseIntPipe) id: number,
    @Body() body: { note: string },
    @Res({ passthrough: true }) reply: ServerResponse | { raw: ServerResponse },
  ): Promise<Order> {
    const order = await this.get(id);
    order.note = body.note;
    await this.orders.save(order);
    await slowOrderHold.wait('raw' in reply ? reply.raw : reply); // Express gives the response, Fastify its reply
    order.total += 1;
    return this.orders.save(order);
  }

  @Post(':id/fail')
  @Audited('order.failed')
  fail(): never {
    throw new Error('boom: internal details that must not be stored');
  }

  @Post(':id/ship')
  async ship(@Param('id', ParseIntPipe) id: number): Promise<{ eventId: string }> {
    const order = await this.get(id);
    const eventId = await this.audit.log({ action: 'order.shipped', target: order, context: { carrier: 'ups', apiToken: 't0k' } });
    return { eventId };
  }
}
