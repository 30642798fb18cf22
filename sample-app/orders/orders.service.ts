import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { LessThan, type Repository } from 'typeorm';
import { isAdmin, type DemoUser } from '../auth/demo-users.js';
import type { CreateOrderInput, UpdateOrderInput } from './order.input.js';
import { OrderNote } from './order-note.entity.js';
import { Order, type OrderStatus } from './order.entity.js';

/** The orders domain. It knows nothing about auditing: the controllers and the job declare intent. */
@Injectable()
export class OrdersService {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRepository(OrderNote) private readonly notes: Repository<OrderNote>,
  ) {}

  create(customer: DemoUser, input: CreateOrderInput): Promise<Order> {
    return this.orders.save(this.orders.create({ ...input, customerId: customer.id, status: 'pending' }));
  }

  /** Admins see every order, customers their own; newest first. */
  list(user: DemoUser): Promise<Order[]> {
    return this.orders.find({ where: isAdmin(user) ? {} : { customerId: user.id }, order: { id: 'DESC' }, take: 100 });
  }

  /** The order, if `user` may see it (admins: any; customers: their own). Others get 404. */
  async get(id: number, user: DemoUser): Promise<Order> {
    const order = await this.orders.findOneBy({ id });
    if (!order || (!isAdmin(user) && order.customerId !== user.id)) throw new NotFoundException(`Order ${id} not found`);
    return order;
  }

  async update(id: number, user: DemoUser, input: UpdateOrderInput): Promise<Order> {
    const order = await this.get(id, user);
    this.assertStatus(order, ['pending'], 'changed');
    return this.orders.save(Object.assign(order, input));
  }

  async pay(id: number, user: DemoUser): Promise<Order> {
    return this.moveTo(await this.get(id, user), ['pending'], 'paid');
  }

  async cancel(id: number, user: DemoUser): Promise<Order> {
    return this.moveTo(await this.get(id, user), ['pending'], 'cancelled');
  }

  async refund(id: number, admin: DemoUser): Promise<Order> {
    return this.moveTo(await this.get(id, admin), ['paid'], 'refunded');
  }

  async forceCancel(id: number, admin: DemoUser): Promise<Order> {
    return this.moveTo(await this.get(id, admin), ['pending', 'paid'], 'cancelled');
  }

  async addNote(id: number, author: DemoUser, body: string): Promise<OrderNote> {
    const order = await this.get(id, author);
    return this.notes.save(this.notes.create({ orderId: order.id, authorId: author.id, body }));
  }

  /** Pending orders created before `cutoff`, oldest first. */
  findStale(cutoff: Date, limit = 100): Promise<Order[]> {
    return this.orders.find({ where: { status: 'pending', createdAt: LessThan(cutoff) }, order: { id: 'ASC' }, take: limit });
  }

  /** Expires an order if it is still pending (it may have been paid meanwhile). */
  async expire(order: Order): Promise<boolean> {
    const result = await this.orders.update({ id: order.id, status: 'pending' }, { status: 'expired' });
    return (result.affected ?? 0) > 0;
  }

  private assertStatus(order: Order, allowed: OrderStatus[], verb: string): void {
    if (!allowed.includes(order.status)) {
      throw new ConflictException(`Order ${order.id} is ${order.status}; only ${allowed.join(' or ')} orders can be ${verb}`);
    }
  }

  private moveTo(order: Order, from: OrderStatus[], to: OrderStatus): Promise<Order> {
    this.assertStatus(order, from, to);
    order.status = to;
    return this.orders.save(order);
  }
}
