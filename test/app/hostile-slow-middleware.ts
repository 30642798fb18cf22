import type { ServerResponse } from 'node:http';
import { Body, Controller, Injectable, Module, Post, Res, UseGuards, type MiddlewareConsumer, type NestMiddleware, type NestModule } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/**
 * A point where a request waits for the test, as one calling a slow external service
 * would: `reached` gives the response of the request that got there, which goes on once
 * the test calls `release()` (bounded: after 20 s when the test never does). `arm()` makes
 * it ready for the next request.
 */
export class RequestHold {
  reached!: Promise<ServerResponse>;
  private arrive!: (response: ServerResponse) => void;
  private released!: Promise<void>;
  private go!: () => void;

  constructor() {
    this.arm();
  }

  arm(): void {
    this.reached = new Promise((resolve) => (this.arrive = resolve));
    this.released = new Promise((resolve) => (this.go = resolve));
  }

  /** For the request: says it is here, then waits until released. */
  wait(response: ServerResponse): Promise<void> {
    this.arrive(response);
    setTimeout(this.go, 20_000).unref();
    return this.released;
  }

  release(): void {
    this.go();
  }
}

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
