// SQLite runs a data source's transactions on its one connection: storing what the app
// journaled there must not open a transaction of its own beside the app's.
import 'reflect-metadata';
import { ConsoleLogger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditEntities, AuditJournalEntity, AuditLogEntity, AuditModule } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';

describe('sqlite, two data sources, writes outside any unit of work on the main one', () => {
  it('50 sequential saves on the main data source all succeed, 50 events, journals empty', async () => {
    @Module({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [Order, Customer, AuditJournalEntity], synchronize: true }),
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', name: 'audit', entities: [...AuditEntities, User], synchronize: true }),
        AuditModule.forRoot({ dataSource: 'audit' }),
      ],
    })
    class M {}
    const app = await NestFactory.create(M, new ExpressAdapter(), { logger: new ConsoleLogger('Nest', { logLevels: ['error'] }) });
    await app.init();
    const main = app.get<DataSource>(getDataSourceToken());
    const audit = app.get<DataSource>(getDataSourceToken('audit'));
    const errors: string[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        try {
          await main.getRepository(Order).save({ status: 'new', total: i });
        } catch (error) {
          errors.push(`${i}: ${(error as Error).message}`);
        }
      }
      for (let i = 0; i < 100 && (await main.getRepository(AuditJournalEntity).count()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(errors).toEqual([]);
      expect(await audit.getRepository(AuditLogEntity).count()).toBe(50);
      expect(await main.getRepository(AuditJournalEntity).count()).toBe(0);
    } finally {
      await app.close();
    }
  }, 60_000);
});
