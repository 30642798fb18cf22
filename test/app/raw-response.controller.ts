import { Body, Controller, Param, ParseIntPipe, Patch, Post, Res, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyReply } from 'fastify';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/** The part of Express's `Response` the handlers use (Express 5 ships no types). */
export interface ExpressResponse {
  status(code: number): ExpressResponse;
  json(body: unknown): unknown;
  setHeader(name: string, value: string): unknown;
  write(chunk: string): boolean;
  end(): unknown;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the streaming handlers write, one line every 40 ms. */
export const STREAMED_LINES = ['line 0\n', 'line 1\n', 'line 2\n', 'line 3\n', 'line 4\n'];

/** `@Res()` handlers answering through Express's response API. */
@Controller('raw/things')
@UseGuards(TokenGuard)
export class ExpressResponseController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.created')
  async create(@Body() body: { note: string }, @Res() res: ExpressResponse): Promise<void> {
    const order = await this.orders.save(this.orders.create({ status: 'raw', note: body.note }));
    res.status(201).json(order);
  }

  @Patch(':id')
  @Audited('thing.updated')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }, @Res() res: ExpressResponse): Promise<void> {
    const order = await this.orders.findOneBy({ id });
    if (!order) {
      res.status(404).json({ message: `Thing ${id} not found` });
      return;
    }
    order.note = body.note;
    res.status(200).json(await this.orders.save(order));
  }

  /** Saves, then writes the body by hand in chunks: the headers are out long before the end. */
  @Post('stream')
  @Audited('thing.written')
  async stream(@Body() body: { note: string }, @Res() res: ExpressResponse): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'raw-stream', note: body.note }));
    res.status(200).setHeader('content-type', 'text/plain');
    for (const line of STREAMED_LINES) {
      res.write(line);
      await sleep(40);
    }
    res.end();
  }
}

/** The same handlers answering through Fastify's reply API. */
@Controller('raw/things')
@UseGuards(TokenGuard)
export class FastifyReplyController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Post()
  @Audited('thing.created')
  async create(@Body() body: { note: string }, @Res() reply: FastifyReply): Promise<void> {
    const order = await this.orders.save(this.orders.create({ status: 'raw', note: body.note }));
    reply.status(201).send(order);
  }

  @Patch(':id')
  @Audited('thing.updated')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }, @Res() reply: FastifyReply): Promise<void> {
    const order = await this.orders.findOneBy({ id });
    if (!order) {
      reply.status(404).send({ message: `Thing ${id} not found` });
      return;
    }
    order.note = body.note;
    reply.status(200).send(await this.orders.save(order));
  }

  /** Saves, then writes the body by hand in chunks on the raw response (the reply is hijacked). */
  @Post('stream')
  @Audited('thing.written')
  async stream(@Body() body: { note: string }, @Res() reply: FastifyReply): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'raw-stream', note: body.note }));
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    for (const line of STREAMED_LINES) {
      reply.raw.write(line);
      await sleep(40);
    }
    reply.raw.end();
  }
}
