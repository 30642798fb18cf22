import { Body, Controller, Get, HttpCode, Param, ParseIntPipe, Patch, Post, UseGuards } from '@nestjs/common';
import { Audited, AuditService, type AuditEvent } from 'nestjs-system-audit';
import { AdminGuard } from '../auth/admin.guard.js';
import { CurrentUser } from '../auth/current-user.decorator.js';
import type { DemoUser } from '../auth/demo-users.js';
import { amountOf, createdOrder, orderInPath, reasonInBody } from './order-audit.js';
import type { OrderNote } from './order-note.entity.js';
import type { Order } from './order.entity.js';
import { optionalReason, parseCreateOrder, parseNote, parseUpdateOrder } from './order.input.js';
import { OrdersService } from './orders.service.js';

type Json = Record<string, unknown> | undefined;

/** The customer-facing orders API. Signed in as any demo user (see `TokenGuard`). */
@Controller('orders')
export class OrdersController {
  constructor(
    private readonly orders: OrdersService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  list(@CurrentUser() user: DemoUser): Promise<Order[]> {
    return this.orders.list(user);
  }

  @Get(':id')
  get(@Param('id', ParseIntPipe) id: number, @CurrentUser() user: DemoUser): Promise<Order> {
    return this.orders.get(id, user);
  }

  @Post()
  @Audited('order.created', { target: createdOrder })
  create(@CurrentUser() user: DemoUser, @Body() body: Json): Promise<Order> {
    return this.orders.create(user, parseCreateOrder(body));
  }

  @Patch(':id')
  @Audited('order.updated', { target: orderInPath })
  update(@Param('id', ParseIntPipe) id: number, @CurrentUser() user: DemoUser, @Body() body: Json): Promise<Order> {
    return this.orders.update(id, user, parseUpdateOrder(body));
  }

  @Post(':id/pay')
  @HttpCode(200)
  @Audited('order.paid', { target: orderInPath, context: amountOf })
  pay(@Param('id', ParseIntPipe) id: number, @CurrentUser() user: DemoUser): Promise<Order> {
    return this.orders.pay(id, user);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @Audited('order.cancelled', { target: orderInPath, reason: reasonInBody })
  cancel(@Param('id', ParseIntPipe) id: number, @CurrentUser() user: DemoUser, @Body() body: Json): Promise<Order> {
    optionalReason(body);
    return this.orders.cancel(id, user);
  }

  /**
   * Deliberately not `@Audited`: nothing declares an intent here. The module's
   * fallback change capture is what records writes like this one (as
   * `orderNote.created`), so that undecorated routes do not slip through.
   */
  @Post(':id/notes')
  addNote(@Param('id', ParseIntPipe) id: number, @CurrentUser() user: DemoUser, @Body() body: Json): Promise<OrderNote> {
    return this.orders.addNote(id, user, parseNote(body));
  }

  /** Everything the audit trail holds about one order, oldest first. Admins only. */
  @Get(':id/history')
  @UseGuards(AdminGuard)
  history(@Param('id', ParseIntPipe) id: number): Promise<AuditEvent[]> {
    return this.audit.history({ type: 'order', id });
  }
}
