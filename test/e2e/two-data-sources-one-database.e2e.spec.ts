// Two data sources pointed at one database (a PostgreSQL schema, a MariaDB database, a
// SQLite file) share its audit_journal table: a marker of a journal row (in the audit data
// source's journal) must not be taken for the row itself.
import 'reflect-metadata';
import { Body, ConsoleLogger, Controller, Injectable, Module, Param, ParseIntPipe, Patch, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, InjectDataSource, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditEntities, Audited, AuditJournalEntity, AuditLogEntity, AuditModule, AuditService, type AuditModuleOptions } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';
import { sharedDatabase } from '../support/paused-instances.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const hooks: { afterWrite?: () => void | Promise<void> } = {};

@Injectable()
class NestedService {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}
  @Audited('order.nested')
  async touch(id: number, note: string): Promise<void> {
    await this.orders.update({ id }, { note });
  }
}

@Controller('shop')
class ShopController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRepository(User, 'audit') private readonly users: Repository<User>,
    @InjectDataSource() private readonly main: DataSource,
    private readonly audit: AuditService,
    private readonly nested: NestedService,
  ) {}

  @Patch(':id/audited')
  @Audited('order.noted')
  async audited(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.orders.update({ id }, { note: body.note });
    await hooks.afterWrite?.();
    return { id };
  }

  @Patch(':id/both')
  @Audited('order.handed-over')
  async both(@Param('id', ParseIntPipe) id: number, @Body() body: { email: string }): Promise<{ id: number }> {
    await this.orders.update({ id }, { status: 'handed-over' });
    await this.users.save(this.users.create({ email: body.email }));
    return { id };
  }

  /** log() inside a transaction of the main data source, in a request. */
  @Patch(':id/log-in-tx')
  async logInTx(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.main.transaction(async (manager) => {
      await manager.getRepository(Order).update({ id }, { total: 77 });
      await this.audit.log({ action: 'order.repriced', target: { type: 'Order', id } });
    });
    return { id };
  }

  /** a nested @Audited method and runAs inside a transaction of the main data source. */
  @Patch(':id/nested-in-tx')
  @Audited('order.outer')
  async nestedInTx(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.main.transaction(async (manager) => {
      await manager.getRepository(Order).update({ id }, { status: 'outer' });
      await this.nested.touch(id + 1, 'nested');
      await this.audit.runAs({ type: 'system', id: 'job' }, async () => {
        await manager.getRepository(Order).update({ id }, { total: 5 });
      });
    });
    return { id };
  }
}

class QuietLogger extends ConsoleLogger {
  override warn(message: unknown, ...rest: unknown[]): void {
    if (rest.includes('DataSourceNameRegistry')) return;
    super.warn(message, ...(rest as [string]));
  }
}

async function twoSourceApp(main: TestDatabase, audit: TestDatabase, options: AuditModuleOptions = {}) {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ ...main.options, entities: [Order, Customer, AuditJournalEntity], synchronize: true, logging: false } as never),
      TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities, User], synchronize: true, logging: false } as never),
      TypeOrmModule.forFeature([Order]),
      TypeOrmModule.forFeature([User], 'audit'),
      AuditModule.forRoot({ ...options, dataSource: 'audit' }),
    ],
    controllers: [ShopController],
    providers: [NestedService],
  })
  class TwoSourceModule {}
  const app: INestApplication = await NestFactory.create(TwoSourceModule, new ExpressAdapter(), { logger: new QuietLogger('Nest', { logLevels: ['error', 'warn'] }) });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return { app, url, main: app.get<DataSource>(getDataSourceToken()), audit: app.get<DataSource>(getDataSourceToken('audit')) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


describe.each(databases())('two data sources on one database (one journal table), on %s', (kind) => {
  it('a PATCH changing the main data source is recorded once', async () => {
    const db = await sharedDatabase(kind);
    const app = await twoSourceApp(db, db, { recoverAfter: 2_000 });
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      await sleep(300);
      await app.audit.getRepository(AuditLogEntity).clear();
      const response = await fetch(`${app.url}/shop/${order.id}/audited`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"note":"x"}' });
      await sleep(300);
      await app.app.get(JournalRecovery).runPass();
      const rows = await app.audit.getRepository(AuditLogEntity).find();
      expect(response.status).toBe(200);
      expect(rows.map((r) => r.action)).toEqual(['order.noted']);
    } finally {
      await app.app.close();
      await db.drop();
    }
  }, 60_000);
});
