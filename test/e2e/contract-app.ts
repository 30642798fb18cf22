import 'reflect-metadata';
import { ConsoleLogger, Injectable, Module, type CanActivate, type DynamicModule, type ExecutionContext, type INestApplication, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import { Column, Entity, PrimaryGeneratedColumn, type DataSource, type DataSourceOptions } from 'typeorm';
import { AuditEntities, AuditJournalEntity, AuditLogEntity, AuditMigrations, AuditModule, AuditService, type AuditModuleOptions } from '../../lib/index.js';
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/** What the scenarios write: one small table. */
@Entity('ctr_item')
export class CtrItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 200 })
  name!: string;

  @Column({ type: 'varchar', length: 40, default: 'new' })
  status!: string;
}

/** A long text column (LONGTEXT on MariaDB, set after start-up). */
@Entity('ctr_doc')
export class CtrDoc {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  body!: string;
}

/** Rows of a bulk import. */
@Entity('ctr_line')
export class CtrLine {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 40 })
  batch!: string;

  @Column({ type: 'int' })
  n!: number;
}

export const CTR_ENTITIES = [CtrItem, CtrDoc, CtrLine];

/** Errors and warnings the app logs, kept for the assertions (and printed). */
export class RecordingLogger extends ConsoleLogger {
  readonly errors: string[] = [];

  override error(message: unknown, ...rest: unknown[]): void {
    this.errors.push([message, ...rest].map((part) => (part instanceof Error ? `${part.name}: ${part.message}` : String(part))).join(' '));
    super.error(message, ...(rest as [string]));
  }

  override warn(message: unknown, ...rest: unknown[]): void {
    if (rest.includes('DataSourceNameRegistry')) return;
    super.warn(message, ...(rest as [string]));
  }
}

/** Signs the caller in from `x-user` (a stand-in for Passport). */
@Injectable()
export class HeaderUserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: unknown }>();
    const id = request.headers['x-user'];
    if (id) request.user = { id, email: `${id}@example.com` };
    return true;
  }
}

export interface ContractAppOptions {
  db: TestDatabase;
  adapter?: 'express' | 'fastify';
  audit?: AuditModuleOptions;
  controllers?: Array<new (...args: never[]) => unknown>;
  providers?: Provider[];
  /** More entities of the app. */
  entities?: Array<new (...args: never[]) => unknown>;
  /** Providers listed before `AuditModule` in the module's imports (as an app module declaring its own first). */
  importsBefore?: DynamicModule[];
}

export interface ContractApp {
  app: INestApplication;
  url: string;
  dataSource: DataSource;
  audit: AuditService;
  logger: RecordingLogger;
  /** Every row of `audit_log`, oldest first. */
  rows(): Promise<AuditLogEntity[]>;
  /** Rows of `audit_journal` left. */
  journal(): Promise<number>;
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** A real Nest app on a real port, on the given database, with the module's tables migrated. */
export async function startContractApp(options: ContractAppOptions): Promise<ContractApp> {
  const typeOrm = {
    ...options.db.options,
    entities: [...CTR_ENTITIES, ...(options.entities ?? []), ...AuditEntities],
    migrations: AuditMigrations,
    migrationsRun: true,
    synchronize: true,
    logging: false,
  } as Parameters<typeof TypeOrmModule.forRoot>[0] & DataSourceOptions;
  @Module({
    imports: [
      TypeOrmModule.forRoot(typeOrm),
      TypeOrmModule.forFeature([...CTR_ENTITIES, ...(options.entities ?? [])]),
      ...(options.importsBefore ?? []),
      AuditModule.forRoot(options.audit ?? {}),
    ],
    controllers: options.controllers ?? [],
    providers: options.providers ?? [],
  })
  class ContractAppModule {}

  const logger = new RecordingLogger('Nest', { logLevels: ['error', 'warn'] });
  const adapter = options.adapter === 'fastify' ? new FastifyAdapter({ forceCloseConnections: true }) : new ExpressAdapter();
  const app = await NestFactory.create(ContractAppModule, adapter, { logger });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const dataSource = app.get<DataSource>(getDataSourceToken());
  return {
    app,
    url,
    dataSource,
    logger,
    audit: app.get(AuditService),
    rows: () => dataSource.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } }),
    journal: () => dataSource.getRepository(AuditJournalEntity).count(),
    request: (path, init = {}) => {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return fetch(`${url}${path}`, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json), signal: rest.signal ?? AbortSignal.timeout(20_000) });
    },
    close: () => app.close(),
  };
}

/**
 * For the enclosing `describe`: a database of `kind` of its own with the app on it, started
 * before its tests (`started` is given the app) and closed, the database dropped, after them.
 */
export function contractAppFor(kind: TestDatabase['kind'], options: Omit<ContractAppOptions, 'db'>, started: (app: ContractApp) => void): void {
  let db: TestDatabase | undefined;
  let app: ContractApp | undefined;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    app = await startContractApp({ ...options, db });
    started(app);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });
}

/** The changes of `rows` touching `entity`, each with the event that holds it. */
export function changesOf(rows: AuditLogEntity[], entity: string): Array<{ action: string; kind: string; id: unknown; operation: string; fields: Record<string, unknown> }> {
  return rows.flatMap((row) =>
    (row.changes ?? [])
      .filter((change) => change.entity === entity)
      .map((change) => ({ action: row.action, kind: row.kind, id: change.id, operation: change.operation, fields: change.fields as Record<string, unknown> })),
  );
}
