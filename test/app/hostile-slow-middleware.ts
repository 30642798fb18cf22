import type { ServerResponse } from 'node:http';
import { Body, Controller, Injectable, Module, Post, Res, UseGuards, type MiddlewareConsumer, type NestMiddleware, type NestModule } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { RequestHold } from './request-hold.js';
import { TokenGuard } from './token.guard.js';

/** Where `SlowMiddleware` holds a request. */
export const slowMiddlewareHold = new RequestHold();

/** An app middleware that takes its time: it passes a request on once `slowMiddlewareHold` releases it. */
@Injectable()
export class SlowMiddleware implements NestMiddleware {
  use(_request: unknown, response: ServerResponse, next: () => void): void {
    void slowMiddlewareHold.wait(response).then(() => next());
  }
}

/** An `@Audited` handler behind the slow middleware. */
@Controller('hostile/slow')
@UseGuards(TokenGuard)
export class SlowRouteController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.slow', { target: ({ result }) => result as Order })
  create(@Body() body: { note: string }): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
  }
}

/** Applies `SlowMiddleware` to `hostile/slow` routes, after the audit module's own middleware. */
@Module({})
export class SlowMiddlewareModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(SlowMiddleware).forRoutes(SlowRouteController);
  }
}

/** Where the `@Res()` handler below works (until released) before it saves. */
export const slowResHold = new RequestHold();

/**
 * An `@Audited` `@Res()` handler that takes its time (until `slowResHold` releases it),
 * saves, and answers only when its client is still there: one that went away meanwhile
 * gets no response at all (the handler returns without ending it), as handlers streaming
 * to a client do.
 */
@Controller('hostile/slow-res')
@UseGuards(TokenGuard)
export class SlowResController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.slow-res')
  async create(@Body() body: { note: string }, @Res() reply: ServerResponse | { raw: ServerResponse }): Promise<void> {
    const response = 'raw' in reply ? reply.raw : reply; // Express gives the response, Fastify its reply
    await slowResHold.wait(response);
    const order = await this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
    if (response.destroyed) return;
    response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(order));
  }
}
