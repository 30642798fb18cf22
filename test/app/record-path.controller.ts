import { Readable } from 'node:stream';
import {
  Body,
  ConflictException,
  Controller,
  Injectable,
  Param,
  ParseIntPipe,
  Patch,
  Post,
  Query,
  Sse,
  StreamableFile,
  UseGuards,
  type MessageEvent,
} from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { defer, interval, map, switchMap, take, type Observable } from 'rxjs';
import type { DataSource, EntityManager, Repository } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';
import { ImportLine } from './import-line.entity.js';
import { STREAMED_LINES } from './raw-response.controller.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';
import { Transactional, TransactionManager } from './transactional.interceptor.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The service account `runAs` work inside a request's transaction runs as. */
export const IMPORTER = { type: 'service', id: 'importer' } as const;

/** A provider whose `@Audited` method writes with whatever manager its caller hands it. */
@Injectable()
export class NestedOrderWriter {
  @Audited('thing.nested', { target: ({ result }) => result as Order })
  async create(manager: EntityManager, note: string): Promise<Order> {
    return manager.save(Order, manager.create(Order, { status: 'nested', note }));
  }
}

/**
 * Routes whose record takes a path other than "handler returns, interceptor stores":
 * transactions opened around or outside the handler, streams, SSE, work left running
 * after the response, and very large units of work.
 */
@Controller('record-path')
@UseGuards(TokenGuard)
export class RecordPathController {
  /** Errors thrown by work a request left running (there is no caller to hand them to). */
  readonly lateErrors: unknown[] = [];

  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly writer: NestedOrderWriter,
  ) {}

  /** Writes through the transaction an app-level interceptor opened around the handler. */
  @Post('tx/orders')
  @Transactional()
  @Audited('order.created', { target: ({ result }) => result as Order })
  async createInTransaction(@TransactionManager() manager: EntityManager, @Body() body: { note: string }): Promise<Order> {
    return manager.save(Order, manager.create(Order, { status: 'tx', note: body.note }));
  }

  /** The same, but the interceptor throws after the handler returned: the transaction rolls back. */
  @Post('tx/orders/refused')
  @Transactional({ failAfterHandler: true })
  @Audited('order.created', { target: ({ result }) => result as Order })
  async createInRefusedTransaction(@TransactionManager() manager: EntityManager, @Body() body: { note: string }): Promise<Order> {
    return manager.save(Order, manager.create(Order, { status: 'tx', note: body.note }));
  }

  /** Server-sent events: saves an order, sends three events, updates the order with the last one. */
  @Sse('events')
  @Audited('thing.streamed')
  events(@Query('note') note: string): Observable<MessageEvent> {
    return defer(() => this.orders.save(this.orders.create({ status: 'streaming', note }))).pipe(
      switchMap((order) =>
        interval(30).pipe(
          take(3),
          switchMap(async (n) => {
            if (n === 2) await this.orders.update(order.id, { status: 'streamed' });
            return n;
          }),
          map((n): MessageEvent => ({ data: { n, orderId: order.id } })),
        ),
      ),
    );
  }

  /** A streamed download: saves an order, then sends `STREAMED_LINES`, 40 ms apart. */
  @Post('export')
  @Audited('thing.exported', { target: ({ args }) => ({ type: 'export', id: (args[0] as { note: string }).note }) })
  async export(@Body() body: { note: string }): Promise<StreamableFile> {
    await this.orders.save(this.orders.create({ status: 'exported', note: body.note }));
    async function* chunks(): AsyncGenerator<string> {
      for (const line of STREAMED_LINES) {
        await sleep(40);
        yield line;
      }
    }
    return new StreamableFile(Readable.from(chunks()), { type: 'text/plain' });
  }

  /** Undecorated: an `@Audited` provider method runs inside this route's transaction. */
  @Post('nested')
  async nested(@Body() body: { note: string; rollback?: boolean }): Promise<{ id: number }> {
    return this.dataSource.transaction(async (manager) => {
      const order = await this.writer.create(manager, body.note);
      if (body.rollback) throw new ConflictException('rolled back after the nested call returned');
      return { id: order.id };
    });
  }

  /** Undecorated: `runAs` inside this route's transaction. */
  @Post('run-as')
  async runAs(@Body() body: { note: string; rollback?: boolean }): Promise<{ id: number }> {
    return this.dataSource.transaction(async (manager) => {
      const order = await this.audit.runAs(IMPORTER, () => manager.save(Order, manager.create(Order, { status: 'imported', note: body.note })));
      if (body.rollback) throw new ConflictException('rolled back after runAs returned');
      return { id: order.id };
    });
  }

  /** Answers at once and leaves a timer behind that writes and logs 300 ms later. */
  @Post('late')
  @Audited('thing.scheduled')
  scheduleLate(@Body() body: { note: string }): { scheduled: true } {
    setTimeout(() => {
      this.orders
        .save(this.orders.create({ status: 'late', note: body.note }))
        .then(() => this.audit.log({ action: 'reminder.sent', context: { note: body.note } }))
        .catch((error: unknown) => this.lateErrors.push(error));
    }, 300);
    return { scheduled: true };
  }

  /** A bulk import: `count` lines inserted in chunks of 1,000, in one transaction. */
  @Post('import')
  @Audited('lines.imported', { target: ({ args }) => ({ type: 'import', id: (args[0] as { batch: string }).batch }) })
  async import(@Body() body: { batch: string; count: number }): Promise<{ batch: string; count: number }> {
    await this.dataSource.transaction(async (manager) => {
      for (let start = 0; start < body.count; start += 1000) {
        const size = Math.min(1000, body.count - start);
        const lines = Array.from({ length: size }, (_, i) => ({ batch: body.batch, sku: `sku-${start + i}` }));
        await manager.insert(ImportLine, lines);
      }
    });
    return { batch: body.batch, count: body.count };
  }

  /** Updates one order's note in an explicit transaction. */
  @Patch('orders/:id/note')
  @Audited('order.noted', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async note(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.dataSource.transaction(async (manager) => {
      const order = await manager.findOneByOrFail(Order, { id });
      order.note = body.note;
      await manager.save(order);
    });
    return { id };
  }
}
