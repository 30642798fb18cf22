// App instances whose entities (and journal) live in a main data source and whose audit
// trail lives in another ("audit"), for the tests of instances taken for dead and of
// recovery across the two: what they share.
import { ConsoleLogger, Module, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AuditEntities, AuditJournalEntity, AuditModule, type AuditModuleOptions } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import type { TestDatabase } from './test-database.js';

/** Without the warning of a second data source registered under a name. */
class QuietLogger extends ConsoleLogger {
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

/** An app instance with `controllers` over `main` (orders and the journal) and `audit` (the audit tables). */
export async function twoDataSourceInstance(main: TestDatabase, audit: TestDatabase, options: AuditModuleOptions, controllers: Type[]): Promise<TwoDataSourceInstance> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ ...main.options, entities: [Order, Customer, AuditJournalEntity], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forFeature([Order]),
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
