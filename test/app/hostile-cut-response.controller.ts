import { Readable } from 'node:stream';
import { Controller, Get, Post, Query, Res, StreamableFile } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';

/** Enough of Node's response (Express's response, Fastify's `reply.raw`) to write and cut a body by hand. */
interface RawResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(chunk: string): unknown;
  destroy(): unknown;
}

/** One chunk of the report every 20 ms: `chunks` of them, then the end or (`fail`) a read error. */
function report(chunks: number, fail: boolean): Readable {
  let sent = 0;
  return new Readable({
    read() {
      setTimeout(() => {
        if (sent < chunks) this.push(`report line ${sent++}\n`.repeat(500));
        else if (fail) this.destroy(new Error('the report file could not be read'));
        else this.push(null);
      }, 20);
    },
  });
}

/**
 * Responses the server cuts short after their headers went out: a `StreamableFile` whose
 * stream fails midway (Nest, like Fastify for a stream it sends, destroys the connection
 * so that the truncated file does not look complete), and an `@Res()` handler that
 * destroys its response after part of the body.
 */
@Controller('hostile/cut')
export class CutResponseController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Get('report')
  @Audited('report.exported')
  async report(@Query('fail') fail?: string, @Query('chunks') chunks = '3'): Promise<StreamableFile> {
    await this.orders.save(this.orders.create({ status: 'exported', note: `report-${fail ?? 'ok'}` }));
    return new StreamableFile(report(Number(chunks), fail !== undefined), { type: 'text/plain' });
  }

  @Post('raw')
  @Audited('report.written')
  async raw(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'written', note: 'raw-cut' }));
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('the first half of the body\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    raw.destroy();
  }
}
