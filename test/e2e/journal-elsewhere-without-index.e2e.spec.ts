import 'reflect-metadata';
import { Body, Controller, Module, Param, ParseIntPipe, Patch, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, Audited, AuditJournalEntity, AuditLogEntity, AuditModule } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { QuietLogger } from '../support/two-data-source-instances.js';

@Controller('shop')
class ShopController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRepository(User, 'crm') private readonly users: Repository<User>,
  ) {}

  /** Writes in the SQLite data source only. */
  @Patch(':id/noted')
  @Audited('order.noted')
  async noted(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    const order = await this.orders.findOneByOrFail({ id });
    order.note = body.note;
    await this.orders.save(order);
    return { id };
  }

  /** Writes in the SQLite data source and in the MariaDB `crm` one. */
  @Patch(':id/assigned')
  @Audited('order.assigned')
  async assigned(@Param('id', ParseIntPipe) id: number, @Body() body: { name: string }): Promise<{ id: number }> {
    const order = await this.orders.findOneByOrFail({ id });
    order.note = body.name;
    await this.orders.save(order);
    await this.users.save(this.users.create({ email: `${body.name}@example.com` }));
    return { id };
  }
}

/**
 * Three data sources: the app's orders and a journal in SQLite, its users and a journal
 * in MariaDB (`crm`), the audit trail in MariaDB too; the MariaDB journal tables made by
 * hand, without the unit id index. After a unit's events are stored, its journal rows in
 * the other data sources are deleted, then its marker in the audit data source's journal:
 * those DELETEs name no index the tables lack.
 */
describe.each(databases().filter((kind) => kind === 'mariadb'))('SQLite and %s data sources, journal tables without the unit id index', (kind) => {
  let audit: TestDatabase;
  let crm: TestDatabase;
  let app: INestApplication;
  let url: string;
  let mainSource: DataSource;
  let crmSource: DataSource;
  let auditSource: DataSource;
  const warnings: string[] = [];

  beforeAll(async () => {
    audit = await createTestDatabase(kind);
    crm = await createTestDatabase(kind);
    @Module({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [Order, Customer, AuditJournalEntity], synchronize: true, logging: false }),
        TypeOrmModule.forRoot({ ...crm.options, name: 'crm', entities: [User, AuditJournalEntity], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        TypeOrmModule.forFeature([Order]),
        TypeOrmModule.forFeature([User], 'crm'),
        AuditModule.forRoot({ dataSource: 'audit' }),
      ],
      controllers: [ShopController],
    })
    class ThreeSourceModule {}
    class Logger extends QuietLogger {
      override warn(message: unknown, ...rest: unknown[]): void {
        warnings.push(String(message));
        super.warn(message, ...rest);
      }
    }
    app = await NestFactory.create(ThreeSourceModule, new ExpressAdapter(), { logger: new Logger('Nest', { logLevels: ['error', 'warn'] }) });
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    mainSource = app.get<DataSource>(getDataSourceToken());
    crmSource = app.get<DataSource>(getDataSourceToken('crm'));
    auditSource = app.get<DataSource>(getDataSourceToken('audit'));
    await crmSource.query('DROP INDEX `idx_audit_journal_unit` ON `audit_journal`');
    await auditSource.query('DROP INDEX `idx_audit_journal_unit` ON `audit_journal`');
  });

  afterAll(async () => {
    await app?.close();
    await audit?.drop();
    await crm?.drop();
  });

  const patch = (path: string, json: unknown) => fetch(`${url}${path}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
  const journals = async () => [
    await mainSource.getRepository(AuditJournalEntity).count(),
    await crmSource.getRepository(AuditJournalEntity).count(),
    await auditSource.getRepository(AuditJournalEntity).count(),
  ];

  it('handlers writing in SQLite, then in SQLite and MariaDB: their events stored, every journal left empty, no warning', async () => {
    const orderId = (await mainSource.getRepository(Order).save({ status: 'new', total: 10 })).id;
    for (const note of ['first', 'second']) expect((await patch(`/shop/${orderId}/noted`, { note })).status).toBe(200);
    for (const name of ['Ada', 'Grace']) expect((await patch(`/shop/${orderId}/assigned`, { name })).status).toBe(200);
    expect(await auditSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(2);
    expect(await auditSource.getRepository(AuditLogEntity).countBy({ action: 'order.assigned' })).toBe(2);
    expect(await journals()).toEqual([0, 0, 0]);
    expect(warnings.filter((message) => message.includes('journal'))).toEqual([]);
  });
});
