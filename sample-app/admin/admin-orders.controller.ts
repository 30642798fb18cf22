import { Body, Controller, HttpCode, Param, ParseIntPipe, Post, UseGuards } from '@nestjs/common';
import { Audited, AuditSource } from 'nestjs-system-audit';
import { AdminGuard } from '../auth/admin.guard.js';
import { CurrentUser } from '../auth/current-user.decorator.js';
import type { DemoUser } from '../auth/demo-users.js';
import { amountOf, orderInPath, reasonInBody } from '../orders/order-audit.js';
import type { Order } from '../orders/order.entity.js';
import { requiredReason } from '../orders/order.input.js';
import { OrdersService } from '../orders/orders.service.js';

/**
 * Back-office actions. `@AuditSource('admin')` records them with `source: 'admin'`, so
 * an auditor can tell an admin's cancellation from the customer's own. Every action
 * must give a reason.
 */
@Controller('admin/orders')
@AuditSource('admin')
@UseGuards(AdminGuard)
export class AdminOrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Post(':id/refund')
  @HttpCode(200)
  @Audited('order.refunded', { target: orderInPath, reason: reasonInBody, context: amountOf })
  refund(@Param('id', ParseIntPipe) id: number, @CurrentUser() admin: DemoUser, @Body() body: Record<string, unknown> | undefined): Promise<Order> {
    requiredReason(body);
    return this.orders.refund(id, admin);
  }

  @Post(':id/force-cancel')
  @HttpCode(200)
  @Audited('order.cancelled', { target: orderInPath, reason: reasonInBody })
  forceCancel(@Param('id', ParseIntPipe) id: number, @CurrentUser() admin: DemoUser, @Body() body: Record<string, unknown> | undefined): Promise<Order> {
    requiredReason(body);
    return this.orders.forceCancel(id, admin);
  }
}
