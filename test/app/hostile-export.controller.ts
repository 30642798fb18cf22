import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Controller, Post, Res } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Order } from './order.entity.js';

/** The lines the export streams. */
export const EXPORT_LINES = ['order 1\n', 'order 2\n', 'order 3\n'];

/** Express's response, or Fastify's reply (whose raw response is written to after `hijack()`). */
interface AnyResponse {
  raw?: NodeJS.WritableStream & { setHeader(name: string, value: string): unknown };
  hijack?: () => void;
  setHeader?(name: string, value: string): unknown;
}

/**
 * A consistent export: inside one transaction, it notes the export (a write) and streams
 * the rows to the client, waiting for the response to finish before the transaction
 * commits (as `pipeline(cursor, response)` inside `transaction()` does).
 */
@Controller('hostile/export')
export class HostileExportController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  async export(@Res() response: AnyResponse): Promise<void> {
    response.hijack?.();
    const out = (response.raw ?? response) as NodeJS.WritableStream & { setHeader(name: string, value: string): unknown };
    await this.dataSource.transaction(async (manager) => {
      await manager.save(Order, manager.create(Order, { status: 'exported', note: 'export-run' }));
      out.setHeader('content-type', 'text/plain');
      await pipeline(Readable.from(EXPORT_LINES), out);
    });
  }
}
