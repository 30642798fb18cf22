import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditModule, InvalidAuditOptionsError } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';

const sqlite = (name?: string) =>
  TypeOrmModule.forRoot({
    ...(name ? { name } : {}),
    type: 'better-sqlite3',
    database: ':memory:',
    entities: [Order, Customer, ...AuditEntities],
    synchronize: true,
  });

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Starts an app of `imports`; the start-up error, or undefined when it started. */
async function startupError(imports: unknown[]): Promise<string | undefined> {
  @Module({ imports: imports as never[] })
  class AppModule {}
  try {
    const app = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
    closers.push(() => app.close());
    await app.init();
    return undefined;
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

describe('the dataSource option', () => {
  it('a name no TypeORM data source has fails start-up naming the option and the known names', async () => {
    expect(await startupError([sqlite(), sqlite('billing'), AuditModule.forRoot({ dataSource: 'audit' })])).toBe(
      'InvalidAuditOptionsError: Invalid AuditModule option "dataSource": no TypeORM data source named "audit" (known: "default", "billing")',
    );
  });

  it('a value that is not a name fails when the module is declared', () => {
    for (const bad of [42, '', '  ', {}]) {
      expect(() => AuditModule.forRoot({ dataSource: bad as never })).toThrow(InvalidAuditOptionsError);
      expect(() => AuditModule.forRootAsync({ dataSource: bad as never, useFactory: () => ({}) })).toThrow(
        /^Invalid AuditModule option "dataSource": must be the name of a TypeORM data source, got /,
      );
    }
  });

  it('returned by a forRootAsync factory, fails start-up saying to pass it beside useFactory', async () => {
    expect(
      await startupError([sqlite(), sqlite('audit'), AuditModule.forRootAsync({ useFactory: () => ({ dataSource: 'audit' }) as never })]),
    ).toBe(
      'InvalidAuditOptionsError: Invalid AuditModule option "dataSource": is read when the module is wired, before the factory runs: ' +
        'pass it to forRootAsync() beside useFactory (forRootAsync({ dataSource: "audit", useFactory })), not in the options the factory returns',
    );
  });

  it('beside useFactory (and repeated by the factory) is used', async () => {
    expect(
      await startupError([
        sqlite(),
        sqlite('audit'),
        AuditModule.forRootAsync({ dataSource: 'audit', useFactory: () => ({ dataSource: 'audit' }) as never }),
      ]),
    ).toBeUndefined();
  });
});
