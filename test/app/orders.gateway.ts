import type { IncomingMessage } from 'node:http';
import { Injectable, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway, WsException, type OnGatewayConnection } from '@nestjs/websockets';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { OrderArchiver } from './jobs.js';
import { Order } from './order.entity.js';
import { USERS } from './token.guard.js';

export interface OrderCommand {
  id: number;
  status?: string;
  note?: string;
}

/** A connected client: a `ws` WebSocket, or a socket.io Socket (with its handshake and per-connection `data`). */
interface Client {
  user?: unknown;
  data?: Record<string, unknown>;
  handshake?: { headers: IncomingMessage['headers'] };
}

/** Lets only admins through (the user set when the connection was made). */
@Injectable()
export class WsAdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const client = context.switchToWs().getClient<Client>();
    const user = (client.data?.['user'] ?? client.user) as { roles: string[] } | undefined;
    if (!user?.roles.includes('admin')) throw new WsException('Admins only');
    return true;
  }
}

/** A gateway on the application's own port, at `/ws` (the ws path, or socket.io's path). */
@WebSocketGateway({ path: '/ws' })
export class OrdersGateway implements OnGatewayConnection {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly archiver: OrderArchiver,
  ) {}

  /** Authenticates the connection once, from the handshake (ws hands over the upgrade request; socket.io keeps it). */
  handleConnection(client: Client, request?: IncomingMessage): void {
    const token = (request?.headers ?? client.handshake?.headers)?.authorization?.replace(/^Bearer /, '');
    const user = token ? USERS[token] : undefined;
    if (!user) return;
    // socket.io's place for per-connection data is `client.data`; a ws WebSocket has none.
    if (client.data && typeof client.data === 'object') client.data['user'] = user;
    else client.user = user;
  }

  @SubscribeMessage('order.update')
  @Audited('order.updated', { target: ({ args }) => ({ type: 'order', id: String((args[0] as OrderCommand).id) }) })
  async update(@MessageBody() command: OrderCommand): Promise<{ event: string; data: Order }> {
    const order = await this.orders.findOneByOrFail({ id: command.id });
    order.status = command.status ?? order.status;
    return { event: 'order.updated', data: await this.orders.save(order) };
  }

  @SubscribeMessage('order.pay')
  @Audited('order.paid')
  async pay(@MessageBody() command: OrderCommand): Promise<{ event: string; data: Order }> {
    const order = await this.orders.findOneByOrFail({ id: command.id });
    if (order.status === 'paid') throw new WsException(`Order ${command.id} is already paid`);
    order.status = 'paid';
    return { event: 'order.paid', data: await this.orders.save(order) };
  }

  /** Calls an @Audited service method: two events, each with its own changes. */
  @SubscribeMessage('order.close')
  @Audited('order.closed')
  async close(@MessageBody() command: OrderCommand, @ConnectedSocket() _client: Client): Promise<{ event: string; data: number }> {
    await this.orders.update(command.id, { note: 'closing' });
    await this.archiver.archive(command.id);
    return { event: 'order.closed', data: command.id };
  }

  /** Admins only: a guard turns everyone else away before the handler. */
  @SubscribeMessage('order.refund')
  @UseGuards(WsAdminGuard)
  @Audited('order.refunded')
  async refund(@MessageBody() command: OrderCommand): Promise<{ event: string; data: Order }> {
    const order = await this.orders.findOneByOrFail({ id: command.id });
    order.status = 'refunded';
    return { event: 'order.refunded', data: await this.orders.save(order) };
  }

  /** Not audited: its change is a fallback event. */
  @SubscribeMessage('order.note')
  async note(@MessageBody() command: OrderCommand): Promise<{ event: string; data: Order }> {
    const order = await this.orders.findOneByOrFail({ id: command.id });
    order.note = command.note ?? null;
    return { event: 'order.noted', data: await this.orders.save(order) };
  }
}
