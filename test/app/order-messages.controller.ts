import { randomBytes } from 'node:crypto';
import { Controller, Injectable, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited, type AuditRpcRequest } from '../../lib/index.js';
import { OrderArchiver } from './jobs.js';
import { Order } from './order.entity.js';
import { USERS } from './token.guard.js';

/**
 * Subjects of this process's handlers. Suites run in parallel processes against one
 * NATS server: a prefix of their own keeps one suite's app from answering another's.
 */
export const SUBJECTS = (() => {
  const prefix = `audit-test-${randomBytes(4).toString('hex')}`;
  return {
    update: `${prefix}.order.update`,
    pay: `${prefix}.order.pay`,
    close: `${prefix}.order.close`,
    note: `${prefix}.order.note`,
    refund: `${prefix}.order.refund`,
  };
})();

/** An object pattern, as TCP clients often use. */
export const CLOSE_COMMAND = { cmd: 'order.close', v: 1 };

export interface OrderMessage {
  id: number;
  status?: string;
  note?: string;
  /** A user the calling service forwards. */
  user?: { id: number; email: string };
}

/**
 * Checks the `authorization` header a message carries (NATS headers, TCP packet
 * metadata) and puts the user on the RPC context, as an auth guard for messages would.
 */
@Injectable()
export class RpcTokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const rpc = context.switchToRpc().getContext<{
      user?: unknown;
      getHeaders?: () => { get(name: string): string } | undefined;
      getMetadata?: () => Record<string, string> | undefined;
    }>();
    const token = (rpc.getHeaders?.()?.get('authorization') || rpc.getMetadata?.()?.['authorization'])?.replace(/^Bearer /, '');
    if (token && USERS[token]) rpc.user = USERS[token];
    return true;
  }
}

/** Lets only admins through (the user set by RpcTokenGuard). */
@Injectable()
export class RpcAdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const user = context.switchToRpc().getContext<{ user?: { roles: string[] } }>().user;
    if (!user?.roles.includes('admin')) throw new RpcException('Admins only');
    return true;
  }
}

/** Message handlers over the fixture's orders. */
@Controller()
@UseGuards(RpcTokenGuard)
export class OrderMessagesController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly archiver: OrderArchiver,
  ) {}

  @MessagePattern(SUBJECTS.update)
  @Audited('order.updated', {
    target: ({ args }) => ({ type: 'order', id: String((args[0] as OrderMessage).id) }),
    reason: ({ request }) => (request as AuditRpcRequest | undefined)?.headers['x-reason'] as string | undefined,
  })
  async update(@Payload() message: OrderMessage): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id: message.id });
    order.status = message.status ?? order.status;
    return this.orders.save(order);
  }

  @MessagePattern(SUBJECTS.pay)
  @Audited('order.paid')
  async pay(@Payload() message: OrderMessage): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id: message.id });
    if (order.status === 'paid') throw new RpcException(`Order ${message.id} is already paid`);
    order.status = 'paid';
    return this.orders.save(order);
  }

  /** Calls an @Audited service method: two events, each with its own changes. */
  @MessagePattern([SUBJECTS.close, CLOSE_COMMAND])
  @Audited('order.closed')
  async close(@Payload() message: OrderMessage, @Ctx() _context: unknown): Promise<{ closed: number }> {
    await this.orders.update(message.id, { note: 'closing' });
    await this.archiver.archive(message.id);
    return { closed: message.id };
  }

  /** Admins only: a guard turns everyone else away before the handler. */
  @MessagePattern(SUBJECTS.refund)
  @UseGuards(RpcAdminGuard)
  @Audited('order.refunded', { target: ({ args }) => ({ type: 'order', id: String((args[0] as OrderMessage).id) }) })
  async refund(@Payload() message: OrderMessage): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id: message.id });
    order.status = 'refunded';
    return this.orders.save(order);
  }

  /** Not audited: its change is a fallback event. */
  @MessagePattern(SUBJECTS.note)
  async note(@Payload() message: OrderMessage): Promise<Order> {
    const order = await this.orders.findOneByOrFail({ id: message.id });
    order.note = message.note ?? null;
    return this.orders.save(order);
  }
}
