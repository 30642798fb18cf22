import { ConflictException, ForbiddenException, Injectable, NotFoundException, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Args, Field, GqlExecutionContext, GraphQLModule, Int, Mutation, ObjectType, Query, Resolver } from '@nestjs/graphql';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { OrderArchiver } from './jobs.js';
import { Order } from './order.entity.js';
import { USERS } from './token.guard.js';

@ObjectType('Order')
export class OrderModel {
  @Field(() => Int)
  id!: number;

  @Field()
  status!: string;

  @Field(() => Int)
  total!: number;

  @Field(() => String, { nullable: true })
  note!: string | null;
}

/** A Passport-style guard for resolvers: sets `req.user` of the GraphQL context from the bearer token. */
@Injectable()
export class GqlTokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const { req } = GqlExecutionContext.create(context).getContext<{ req: { headers: Record<string, string | undefined>; user?: unknown } }>();
    const token = req.headers['authorization']?.replace(/^Bearer /, '');
    if (token !== undefined && USERS[token]) req.user = USERS[token];
    return true;
  }
}

/** Lets only admins through: the user must have been set by GqlTokenGuard. */
@Injectable()
export class GqlAdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const { req } = GqlExecutionContext.create(context).getContext<{ req: { user?: { roles: string[] } } }>();
    if (!req.user?.roles.includes('admin')) throw new ForbiddenException('Admins only');
    return true;
  }
}

/** Code-first resolvers over the fixture's orders. */
@Resolver(() => OrderModel)
@UseGuards(GqlTokenGuard)
export class OrdersResolver {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly archiver: OrderArchiver,
  ) {}

  @Query(() => OrderModel)
  async order(@Args('id', { type: () => Int }) id: number): Promise<Order> {
    const order = await this.orders.findOneBy({ id });
    if (!order) throw new NotFoundException(`Order ${id} not found`);
    return order;
  }

  @Mutation(() => OrderModel)
  @Audited('order.updated', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async updateOrder(@Args('id', { type: () => Int }) id: number, @Args('status') status: string): Promise<Order> {
    const order = await this.order(id);
    order.status = status;
    return this.orders.save(order);
  }

  @Mutation(() => OrderModel)
  @Audited('order.paid')
  async payOrder(@Args('id', { type: () => Int }) id: number): Promise<Order> {
    const order = await this.order(id);
    if (order.status === 'paid') throw new ConflictException(`Order ${id} is already paid`);
    order.status = 'paid';
    return this.orders.save(order);
  }

  /** Calls an @Audited service method: two events, each with its own changes. */
  @Mutation(() => Boolean)
  @Audited('order.closed')
  async closeOrder(@Args('id', { type: () => Int }) id: number): Promise<boolean> {
    await this.orders.update(id, { note: 'closing' });
    await this.archiver.archive(id);
    return true;
  }

  /** Admins only: a guard turns everyone else away before the resolver. */
  @Mutation(() => OrderModel)
  @UseGuards(GqlAdminGuard)
  @Audited('order.refunded', { target: ({ args }) => (args[0] !== undefined ? { type: 'order', id: String(args[0]) } : undefined) })
  async refundOrder(@Args('id', { type: () => Int }) id: number): Promise<Order> {
    const order = await this.order(id);
    order.status = 'refunded';
    return this.orders.save(order);
  }

  /** Not audited: its change is a fallback event. */
  @Mutation(() => OrderModel)
  async noteOrder(@Args('id', { type: () => Int }) id: number, @Args('note') note: string): Promise<Order> {
    const order = await this.order(id);
    order.note = note;
    return this.orders.save(order);
  }
}

/** Apollo on the app's HTTP server, schema built from the resolvers, `req` in the GraphQL context. */
export const graphqlModule = () =>
  GraphQLModule.forRoot<ApolloDriverConfig>({
    driver: ApolloDriver,
    autoSchemaFile: true,
    context: ({ req }: { req: unknown }) => ({ req }),
  });
