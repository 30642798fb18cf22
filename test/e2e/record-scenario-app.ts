import { AsyncLocalStorage } from 'node:async_hooks';
import { Readable } from 'node:stream';
import {
  Body,
  Controller,
  Get,
  Inject,
  Injectable,
  Param,
  Patch,
  Post,
  Query,
  Res,
  Scope,
  SetMetadata,
  Sse,
  StreamableFile,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type MessageEvent,
  type NestInterceptor,
} from '@nestjs/common';
import { Reflector, REQUEST } from '@nestjs/core';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { defer, from, interval, lastValueFrom, map, switchMap, take, type Observable } from 'rxjs';
import { Column, Entity, PrimaryGeneratedColumn, type DataSource, type EntityManager, type Repository } from 'typeorm';
import { Audited, AuditService } from '../../lib/index.js';

/** The part of Express's response the handlers use (Express 5 ships no types). */
interface Response {
  status(code: number): Response;
  json(body?: unknown): void;
  redirect(status: number, url: string): void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Entity('recS_item')
export class RecSItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 400 })
  note!: string;

  @Column({ type: 'varchar', length: 60, default: 'new' })
  status!: string;
}

@Entity('recS_line')
export class RecSLine {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 40 })
  batch!: string;

  @Column({ type: 'varchar', length: 40 })
  sku!: string;
}

/** A table created by hand with a foreign key checked only at commit (PostgreSQL, SQLite). */
@Entity('recS_deferred', { synchronize: false })
export class RecSDeferred {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ name: 'item_id', type: 'int' })
  itemId!: number;
}

export const RVB_ENTITIES = [RecSItem, RecSLine, RecSDeferred];

/** DDL of `recS_deferred` per database kind. */
export function deferredTableSql(kind: string, schema?: string): string {
  if (kind === 'postgres')
    return `CREATE TABLE "${schema}"."recS_deferred" (id serial PRIMARY KEY, item_id int NOT NULL REFERENCES "${schema}"."recS_item"(id) DEFERRABLE INITIALLY DEFERRED)`;
  if (kind === 'sqlite')
    return `CREATE TABLE "recS_deferred" (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id integer NOT NULL REFERENCES "recS_item"(id) DEFERRABLE INITIALLY DEFERRED)`;
  return `CREATE TABLE \`recS_deferred\` (id int AUTO_INCREMENT PRIMARY KEY, item_id int NOT NULL)`;
}

/**
 * Sets `request.user` from the body's `user` (a JSON object) or from `x-recs-user` (a numeric id).
 */
@Injectable()
export class RecSUserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; body?: { user?: unknown }; user?: unknown }>();
    const header = request.headers['x-recs-user'];
    if (header) request.user = { id: Number(header), email: `u${header}@recs.example` };
    else if (request.body && typeof request.body === 'object' && request.body.user) request.user = request.body.user;
    return true;
  }
}

/** The transaction's manager, handed to handlers through AsyncLocalStorage. */
export const recsTx = new AsyncLocalStorage<EntityManager>();
const RVB_TX = 'recs:tx';
export const RecSTransactional = () => SetMetadata(RVB_TX, true);

/** An app-level interceptor wrapping `@RecSTransactional()` handlers in a transaction. */
@Injectable()
export class RecSTxInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.reflector.get<boolean>(RVB_TX, ctx.getHandler())) return next.handle();
    return from(
      this.dataSource.transaction((manager) => recsTx.run(manager, () => lastValueFrom(next.handle(), { defaultValue: undefined }))),
    );
  }
}

@Injectable()
export class RecSNestedWriter {
  @Audited('recs.nested')
  async write(manager: EntityManager, note: string): Promise<RecSItem> {
    return manager.save(RecSItem, manager.create(RecSItem, { note, status: 'nested' }));
  }
}

@Injectable({ scope: Scope.REQUEST })
export class RecSScopedWriter {
  constructor(
    @Inject(REQUEST) private readonly request: { headers: Record<string, string | undefined> },
    @InjectRepository(RecSItem) private readonly items: Repository<RecSItem>,
  ) {}

  async write(): Promise<RecSItem> {
    await sleep(Math.floor(Math.random() * 20));
    return this.items.save(this.items.create({ note: `scoped-${this.request.headers['x-recs-user']}` }));
  }
}

@Controller('recs')
@UseGuards(RecSUserGuard)
export class RecSController {
  readonly lateErrors: unknown[] = [];

  constructor(
    @InjectRepository(RecSItem) private readonly items: Repository<RecSItem>,
    @InjectRepository(RecSLine) private readonly lines: Repository<RecSLine>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly nested: RecSNestedWriter,
  ) {}

  @Post('hostile')
  @Audited('recs.hostile', {
    reason: ({ args }) => (args[0] as { reason: string }).reason,
    target: ({ args }) => ({ type: 'recs', id: (args[0] as { targetId: string }).targetId }),
    context: ({ args }) => (args[0] as { ctx?: Record<string, unknown> }).ctx,
  })
  async hostile(@Body() body: { note: string }): Promise<{ id: number }> {
    const item = await this.items.save(this.items.create({ note: body.note }));
    return { id: item.id };
  }

  @Post('items')
  @Audited('recs.created')
  async create(@Body() body: { note: string }): Promise<RecSItem> {
    await sleep(Math.floor(Math.random() * 20));
    return this.items.save(this.items.create({ note: body.note }));
  }

  @Post('raw/created')
  @Audited('recs.raw.created')
  async rawCreated(@Body() body: { note: string }, @Res() res: Response): Promise<void> {
    const item = await this.items.save(this.items.create({ note: body.note }));
    res.status(201).json(item);
  }

  @Patch('raw/missing/:id')
  @Audited('recs.raw.updated')
  async rawMissing(@Param('id') id: string, @Res() res: Response): Promise<void> {
    const item = await this.items.findOneBy({ id: Number(id) });
    if (!item) {
      res.status(404).json();
      return;
    }
    res.status(200).json(item);
  }

  /** `@Res({ passthrough: true })`: the handler sets the status and returns the body. */
  @Patch('passthrough/:id')
  @Audited('recs.passthrough')
  async passthrough(@Param('id') id: string, @Res({ passthrough: true }) res: Response): Promise<unknown> {
    const item = await this.items.findOneBy({ id: Number(id) });
    if (!item) {
      res.status(404);
      return { message: 'not here' };
    }
    return item;
  }

  /** `res.redirect()` through `@Res()`. */
  @Post('raw/redirect')
  @Audited('recs.redirected')
  async rawRedirect(@Body() body: { note: string }, @Res() res: Response): Promise<void> {
    const item = await this.items.save(this.items.create({ note: body.note }));
    res.redirect(303, `/recs/items/${item.id}`);
  }

  /** Saves, then waits `wait` ms before answering through `@Res()`. */
  @Post('raw/slow')
  @Audited('recs.raw.slow')
  async rawSlow(@Body() body: { note: string; wait: number }, @Res() res: Response): Promise<void> {
    const item = await this.items.save(this.items.create({ note: body.note }));
    await sleep(body.wait);
    res.status(201).json(item);
  }

  /** Saves, then waits `wait` ms before returning. */
  @Post('slow')
  @Audited('recs.slow')
  async slow(@Body() body: { note: string; wait: number }): Promise<RecSItem> {
    const item = await this.items.save(this.items.create({ note: body.note }));
    await sleep(body.wait);
    return item;
  }

  @Sse('sse')
  @Audited('recs.sse')
  sse(@Query('note') note: string): Observable<MessageEvent> {
    return defer(() => this.items.save(this.items.create({ note }))).pipe(
      switchMap((item) => interval(20).pipe(take(2), map((n): MessageEvent => ({ data: { n, id: item.id } })))),
    );
  }

  @Get('file')
  @Audited('recs.file')
  async file(@Query('note') note: string): Promise<StreamableFile> {
    await this.items.save(this.items.create({ note }));
    return new StreamableFile(Readable.from(['a\n', 'b\n', 'c\n']), { type: 'text/plain' });
  }

  @Get('file-buffer')
  @Audited('recs.file')
  async fileBuffer(@Query('note') note: string): Promise<StreamableFile> {
    await this.items.save(this.items.create({ note }));
    return new StreamableFile(Buffer.from('hello recs\n'), { type: 'text/plain' });
  }

  @Post('tx/ok')
  @RecSTransactional()
  @Audited('recs.tx')
  async txOk(@Body() body: { note: string }): Promise<RecSItem> {
    const manager = recsTx.getStore()!;
    return manager.save(RecSItem, manager.create(RecSItem, { note: body.note }));
  }

  /** Saves an item and a row whose foreign key is only checked at commit, and is wrong. */
  @Post('tx/commit-fails')
  @RecSTransactional()
  @Audited('recs.tx')
  async txCommitFails(@Body() body: { note: string }): Promise<RecSItem> {
    const manager = recsTx.getStore()!;
    const item = await manager.save(RecSItem, manager.create(RecSItem, { note: body.note }));
    await manager.save(RecSDeferred, manager.create(RecSDeferred, { itemId: 987654321 }));
    return item;
  }

  /** A nested `@Audited` call in the interceptor's transaction, whose commit then fails (deferred foreign key). */
  @Post('tx/nested-commit-fails')
  @RecSTransactional()
  async txNestedCommitFails(@Body() body: { note: string }): Promise<{ id: number }> {
    const manager = recsTx.getStore()!;
    const item = await this.nested.write(manager, body.note);
    await manager.save(RecSDeferred, manager.create(RecSDeferred, { itemId: 987654321 }));
    return { id: item.id };
  }

  /** The same nested call, the transaction then rolled back by a throw. */
  @Post('tx/nested-thrown')
  @RecSTransactional()
  async txNestedThrown(@Body() body: { note: string }): Promise<{ id: number }> {
    const manager = recsTx.getStore()!;
    await this.nested.write(manager, body.note);
    throw new Error('rolled back after the nested call');
  }

  /** `runAs` in the interceptor's transaction, whose commit then fails (deferred foreign key). */
  @Post('tx/run-as-commit-fails')
  @RecSTransactional()
  async txRunAsCommitFails(@Body() body: { note: string }): Promise<{ id: number }> {
    const manager = recsTx.getStore()!;
    const item = await this.audit.runAs({ type: 'service', id: 'recs-importer' }, () => manager.save(RecSItem, manager.create(RecSItem, { note: body.note })));
    await manager.save(RecSDeferred, manager.create(RecSDeferred, { itemId: 987654321 }));
    return { id: item.id };
  }

  /** Starts a write it does not await: it lands after the response. */
  @Post('unawaited')
  @Audited('recs.unawaited')
  unawaited(@Body() body: { note: string }): { started: true } {
    void (async () => {
      await sleep(200);
      await this.items.save(this.items.create({ note: body.note, status: 'unawaited' }));
    })().catch((error: unknown) => this.lateErrors.push(error));
    return { started: true };
  }

  /** A timer that calls an `@Audited` provider method after the response. */
  @Post('late-audited')
  @Audited('recs.scheduled')
  lateAudited(@Body() body: { note: string }): { scheduled: true } {
    setTimeout(() => {
      this.dataSource.transaction((manager) => this.nested.write(manager, body.note)).catch((error: unknown) => this.lateErrors.push(error));
    }, 200);
    return { scheduled: true };
  }

  /** A timer that logs after the response. */
  @Post('late-log')
  @Audited('recs.scheduled')
  lateLog(@Body() body: { note: string }): { scheduled: true } {
    setTimeout(() => {
      this.audit.log({ action: 'recs.reminded', reason: body.note }).catch((error: unknown) => this.lateErrors.push(error));
    }, 200);
    return { scheduled: true };
  }

  @Post('nested')
  async nestedCall(@Body() body: { note: string }): Promise<{ id: number }> {
    return this.dataSource.transaction(async (manager) => {
      const item = await this.nested.write(manager, body.note);
      await manager.update(RecSItem, item.id, { status: 'after-nested' });
      return { id: item.id };
    });
  }

  @Post('nested-audited')
  @Audited('recs.outer')
  async nestedAudited(@Body() body: { note: string }): Promise<{ id: number }> {
    return this.dataSource.transaction(async (manager) => {
      const outer = await manager.save(RecSItem, manager.create(RecSItem, { note: `${body.note}-outer` }));
      const item = await this.nested.write(manager, body.note);
      return { id: item.id + 0 * outer.id };
    });
  }

  @Post('run-as')
  async runAsCall(@Body() body: { note: string }): Promise<{ id: number }> {
    return this.dataSource.transaction(async (manager) => {
      const item = await this.audit.runAs({ type: 'service', id: 'recs-importer' }, () => manager.save(RecSItem, manager.create(RecSItem, { note: body.note })));
      await manager.update(RecSItem, item.id, { status: 'after-run-as' });
      return { id: item.id };
    });
  }

  @Post('late')
  @Audited('recs.scheduled')
  scheduleLate(@Body() body: { note: string }): { scheduled: true } {
    setTimeout(() => {
      this.dataSource
        .transaction((manager) => manager.save(RecSItem, manager.create(RecSItem, { note: body.note, status: 'late' })))
        .catch((error: unknown) => this.lateErrors.push(error));
    }, 250);
    return { scheduled: true };
  }

  /** `count` lines, in chunks of 1,000, each `insert` its own implicit transaction. */
  @Post('import')
  @Audited('recs.imported')
  async import(@Body() body: { batch: string; count: number }): Promise<{ count: number }> {
    for (let start = 0; start < body.count; start += 1000) {
      const size = Math.min(1000, body.count - start);
      await this.lines.insert(Array.from({ length: size }, (_, i) => ({ batch: body.batch, sku: `s${start + i}` })));
    }
    return { count: body.count };
  }

  /** `count` lines saved in one transaction with `save` (chunked). */
  @Post('import-save')
  @Audited('recs.imported')
  async importSave(@Body() body: { batch: string; count: number }): Promise<{ count: number }> {
    await this.dataSource.transaction((manager) =>
      manager.save(
        RecSLine,
        Array.from({ length: body.count }, (_, i) => manager.create(RecSLine, { batch: body.batch, sku: `s${i}` })),
        { chunk: 500 },
      ),
    );
    return { count: body.count };
  }
}

/** Depends on a request-scoped provider, so it is request-scoped too. */
@Controller('recs-scoped')
@UseGuards(RecSUserGuard)
export class RecSScopedController {
  constructor(private readonly writer: RecSScopedWriter) {}

  @Post()
  @Audited('recs.scoped')
  async write(): Promise<RecSItem> {
    return this.writer.write();
  }
}

/** An undecorated route in the app-level interceptor's transaction calling a nested `@Audited` method. */
@Controller('recs-tx-nested')
@UseGuards(RecSUserGuard)
export class RecSTxNestedController {
  constructor(private readonly nested: RecSNestedWriter) {}

  @Post()
  @RecSTransactional()
  async write(@Body() body: { note: string }): Promise<RecSItem> {
    await sleep(Math.floor(Math.random() * 20));
    return this.nested.write(recsTx.getStore()!, body.note);
  }
}

/** Per-route interceptor variant: a transaction around the handler declared with `@UseInterceptors`. */
@Controller('recs-local')
@UseGuards(RecSUserGuard)
@UseInterceptors(RecSTxInterceptor)
export class RecSLocalTxController {
  @Post()
  @RecSTransactional()
  @Audited('recs.local.tx')
  async write(@Body() body: { note: string }): Promise<RecSItem> {
    const manager = recsTx.getStore()!;
    return manager.save(RecSItem, manager.create(RecSItem, { note: body.note }));
  }
}
