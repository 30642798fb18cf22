import type { ServerResponse } from 'node:http';
import { Body, Controller, Injectable, Module, Post, Res, UseGuards, type MiddlewareConsumer, type NestMiddleware, type NestModule } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** How long the slow middleware holds a request before passing it on. */
export const SLOW_MIDDLEWARE_MS = 400;

/** An app middleware that takes its time (as one calling an external service would). */
@Injectable()
export class SlowMiddleware implements NestMiddleware {
  use(_request: unknown, _response: unknown, next: () => void): void {
    setTimeout(next, SLOW_MIDDLEWARE_MS);
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

/** How long the `@Res()` handler below works before answering. */
export const SLOW_RES_HANDLER_MS = 400;

/**
 * An `@Audited` `@Res()` handler that takes its time, saves, and answers only when its
 * client is still there: one that went away meanwhile gets no response at all (the
 * handler returns without ending it), as handlers streaming to a client do.
 */
@Controller('hostile/slow-res')
@UseGuards(TokenGuard)
export class SlowResController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.slow-res')
  async create(@Body() body: { note: string }, @Res() reply: ServerResponse | { raw: ServerResponse }): Promise<void> {
    const response = 'raw' in reply ? reply.raw : reply; // Express gives the response, Fastify its reply
    await new Promise((resolve) => setTimeout(resolve, SLOW_RES_HANDLER_MS));
    const order = await this.orders.save(this.orders.create({ status: 'slow', note: body.note }));
    if (response.destroyed) return;
    response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(order));
  }
}
