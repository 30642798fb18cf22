import 'reflect-metadata';
import { ConsoleLogger, Module, type DynamicModule, type INestApplication, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource, DataSourceOptions } from 'typeorm';
import { AuditEntities, AuditLogEntity, AuditMigrations, AuditModule, AuditService, type AuditModuleOptions } from '../../lib/index.js';
import { clearAuditLog } from '../support/clear-audit-log.js';
import type { TestDatabase } from '../support/test-database.js';
import { AdminController, AuthController } from './admin.controller.js';
import { CaptureController } from './capture.controller.js';
import { Customer } from './customer.entity.js';
import { Order } from './order.entity.js';
import { Session, User } from './user.entity.js';
import { OrdersController } from './orders.controller.js';

/**
 * Errors and warnings, less @nestjs/typeorm's note that many apps in one process reuse
 * the default data source name (each suite boots several apps, one after another).
 */
class TestLogger extends ConsoleLogger {
  override warn(message: unknown, ...rest: unknown[]): void {
    if (rest.includes('DataSourceNameRegistry')) return;
    super.warn(message, ...(rest as [string]));
  }
}

export type HttpAdapterKind = 'express' | 'fastify';
export const ADAPTERS: HttpAdapterKind[] = ['express', 'fastify'];

export interface TestAppOptions {
  db: TestDatabase;
  adapter: HttpAdapterKind;
  audit?: AuditModuleOptions;
  /** Replace `AuditModule.forRoot(audit)` (for the async variants). */
  auditModule?: DynamicModule;
  controllers?: Array<new (...args: never[]) => unknown>;
  /** Extra imports of the app module. */
  imports?: Array<DynamicModule | (new (...args: never[]) => unknown)>;
  /** Extra providers of the app module (e.g. an APP_GUARD). */
  providers?: Provider[];
  entities?: Array<new (...args: never[]) => unknown>;
  /** Options of the Fastify adapter (e.g. its own `trustProxy`). */
  fastify?: ConstructorParameters<typeof FastifyAdapter>[0];
  /** The data source's migrations (default: `AuditMigrations`). */
  migrations?: Array<new () => unknown>;
  /** TypeORM's `synchronize` (default true; off for a schema only migrations may change, e.g. a partitioned `audit_log`). */
  synchronize?: boolean;
  /**
   * Makes the data source from the options (`TypeOrmModule.forRootAsync`'s
   * `dataSourceFactory`, as libraries that patch the data source are set up).
   */
  dataSourceFactory?: (options: DataSourceOptions) => Promise<DataSource>;
  /** Called after the app is created and before it listens (a WebSocket adapter, connected microservices). */
  configure?: (app: INestApplication) => void | Promise<void>;
}

export interface TestApp {
  app: INestApplication;
  url: string;
  dataSource: DataSource;
  audit: AuditService;
  /** Every row of `audit_log`, oldest first. */
  rows(): Promise<AuditLogEntity[]>;
  /** Empties `audit_log`. */
  clearAudit(): Promise<void>;
  /** Runs fixture set-up, then empties `audit_log` so a test sees only what it does. */
  seed<T>(fn: () => Promise<T>): Promise<T>;
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** Boots the fixture app on a real server (port 0) over the given adapter and database. */
export async function createTestApp(options: TestAppOptions): Promise<TestApp> {
  const typeOrmOptions = {
    ...options.db.options,
    entities: [Order, Customer, User, Session, ...AuditEntities, ...(options.entities ?? [])],
    migrations: options.migrations ?? AuditMigrations,
    migrationsRun: true,
    synchronize: options.synchronize ?? true,
    logging: false,
  } as Parameters<typeof TypeOrmModule.forRoot>[0] & DataSourceOptions;
  const { dataSourceFactory } = options;
  @Module({
    imports: [
      dataSourceFactory
        ? TypeOrmModule.forRootAsync({ useFactory: () => typeOrmOptions, dataSourceFactory: (given) => dataSourceFactory(given!) })
        : TypeOrmModule.forRoot(typeOrmOptions),
      TypeOrmModule.forFeature([Order, Customer, User, Session, ...(options.entities ?? [])]),
      options.auditModule ?? AuditModule.forRoot(options.audit ?? {}),
      ...(options.imports ?? []),
    ],
    controllers: [OrdersController, CaptureController, AdminController, AuthController, ...(options.controllers ?? [])],
    providers: options.providers ?? [],
  })
  class TestAppModule {}

  const adapter = options.adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(options.fastify);
  const app = await NestFactory.create(TestAppModule, adapter, { logger: new TestLogger('Nest', { logLevels: ['error', 'warn'] }) });
  await options.configure?.(app);
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const dataSource = app.get<DataSource>(getDataSourceToken());
  return {
    app,
    url,
    dataSource,
    audit: app.get(AuditService),
    rows: () => dataSource.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } }),
    clearAudit: () => clearAuditLog(dataSource),
    seed: async (fn) => {
      const value = await fn();
      await clearAuditLog(dataSource);
      return value;
    },
    request: (path, init = {}) => {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return fetch(`${url}${path}`, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) });
    },
    close: () => app.close(),
  };
}
