import { Controller, Get, Post, Res, StreamableFile } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';

/** The body both handlers answer with, its length declared in `Content-Length`. */
export const INVOICE = 'invoice line: 1 x espresso beans, 1 kg\n'.repeat(400);
/** Over 1 MiB: more than is held back of a body that ends with the connection. */
export const LARGE_INVOICE = INVOICE.repeat(70);

/** Enough of Node's response (Express's response, Fastify's `reply.raw`) to write a body by hand. */
interface RawResponse {
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  write(chunk: string): unknown;
  end(): unknown;
}

/**
 * Bodies whose length is known before they are written, so that a client takes the
 * response as complete once that many bytes arrived, whether or not the response ends
 * cleanly afterwards: a `StreamableFile` of a buffer (Nest declares its length), and an
 * `@Res()` handler that declares `Content-Length` and writes the body before ending.
 */
@Controller('hostile/sized')
export class SizedBodyController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Get('file')
  @Audited('invoice.downloaded')
  async file(): Promise<StreamableFile> {
    await this.orders.save(this.orders.create({ status: 'downloaded', note: 'sized-file' }));
    return new StreamableFile(Buffer.from(INVOICE), { type: 'text/plain' });
  }

  @Post('written')
  @Audited('invoice.written')
  async written(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'written', note: 'sized-written' }));
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(INVOICE) });
    // In two writes, the second one completing the body, then the end.
    raw.write(INVOICE.slice(0, 1000));
    await new Promise((resolve) => setTimeout(resolve, 10));
    raw.write(INVOICE.slice(1000));
    raw.end();
  }

  /** The same body written with no length declared: chunked for HTTP/1.1, ended by the connection's close for HTTP/1.0. */
  @Post('unsized')
  @Audited('invoice.written')
  async unsized(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.unsizedBody(response, INVOICE, 'unsized-written');
  }

  /** The same, with a body over what is held back of a body that ends with the connection (1 MiB). */
  @Post('unsized-large')
  @Audited('invoice.written')
  async unsizedLarge(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.unsizedBody(response, LARGE_INVOICE, 'unsized-large-written');
  }

  private async unsizedBody(response: { raw?: RawResponse } & RawResponse, body: string, note: string): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'written', note }));
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write(body.slice(0, 1000));
    await new Promise((resolve) => setTimeout(resolve, 10));
    raw.write(body.slice(1000));
    raw.end();
  }
}
