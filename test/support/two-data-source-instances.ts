// App instances whose entities (and journal) live in a main data source and whose audit
// trail lives in another ("audit"), for the tests of instances taken for dead and of
// recovery across the two: what they share.
import { ConsoleLogger, Module, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, type MockInstance } from 'vitest';
import { AuditEntities, AuditJournalEntity, AuditModule, type AuditModuleOptions } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { gate, sharedDatabase, withoutTimerPasses } from './paused-instances.js';
import type { TestDatabase } from './test-database.js';

/** Without the warning of a second data source registered under a name. */
export class QuietLogger extends ConsoleLogger {
  override warn(message: unknown, ...rest: unknown[]): void {
    if (rest.includes('DataSourceNameRegistry')) return;
    super.warn(message, ...(rest as [string]));
  }
}

export interface TwoDataSourceInstance {
  app: INestApplication;
  url: string;
  main: DataSource;
  audit: DataSource;
}

/**
 * An app instance with `controllers` over `main` (orders and the journal) and `audit` (the
 * audit tables, and `auditEntities`: app entities of the audit data source, whose changes
 * are journaled there).
 */
export async function twoDataSourceInstance(
  main: TestDatabase,
  audit: TestDatabase,
  options: AuditModuleOptions,
  controllers: Type[],
  auditEntities: Type[] = [],
): Promise<TwoDataSourceInstance> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ ...main.options, entities: [Order, Customer, AuditJournalEntity], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities, ...auditEntities], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forFeature([Order]),
      ...(auditEntities.length ? [TypeOrmModule.forFeature(auditEntities, 'audit')] : []),
      AuditModule.forRoot({ shutdownTimeout: 500, ...options, dataSource: 'audit' }),
    ],
    controllers,
  })
  class InstanceModule {}
  const app = await NestFactory.create(InstanceModule, new ExpressAdapter(), { logger: new QuietLogger('Nest', { logLevels: ['error'] }) });
  await app.listen(0, '127.0.0.1');
  return {
    app,
    url: (await app.getUrl()).replace('[::1]', '127.0.0.1'),
    main: app.get<DataSource>(getDataSourceToken()),
    audit: app.get<DataSource>(getDataSourceToken('audit')),
  };
}

export interface PausedTwoDataSourceInstances {
  main: TestDatabase;
  audit: TestDatabase;
  /** The instance that recovers (recoverAfter 1 s), for the whole file. */
  rescuer: TwoDataSourceInstance;
  /** The instance started by the test, closed (its gate opened) after it. */
  paused?: TwoDataSourceInstance;
  /** Starts the instance to be paused; `recoverAfter` 60 s unless `options` say otherwise. */
  start(options: AuditModuleOptions): Promise<TwoDataSourceInstance>;
}

/**
 * For a file of tests of an instance taken for dead whose journal is in another data
 * source than its audit trail: shared main and audit databases, the rescuer, and the
 * instance each test pauses.
 */
export function pausedTwoDataSourceInstances(kind: TestDatabase['kind'], controllers: Type[]): PausedTwoDataSourceInstances {
  let timerPasses: MockInstance | undefined;
  const env = {
    start: async (options: AuditModuleOptions) => {
      timerPasses = withoutTimerPasses(env.rescuer.app);
      return (env.paused = await twoDataSourceInstance(env.main, env.audit, { recoverAfter: 60_000, ...options }, controllers));
    },
  } as PausedTwoDataSourceInstances;
  beforeAll(async () => {
    env.main = await sharedDatabase(kind);
    env.audit = await sharedDatabase(kind);
    env.rescuer = await twoDataSourceInstance(env.main, env.audit, { recoverAfter: 1_000 }, controllers);
  });
  afterEach(async () => {
    gate.open?.();
    await env.paused?.app.close().catch(() => undefined);
    env.paused = undefined;
    timerPasses?.mockRestore();
    timerPasses = undefined;
  });
  afterAll(async () => {
    await env.rescuer?.app.close().catch(() => undefined);
    await env.main?.drop();
    await env.audit?.drop();
  });
  return env;
}
