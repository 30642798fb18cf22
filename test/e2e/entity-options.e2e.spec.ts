import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditModule, AuditService, InvalidAuditOptionsError, type AuditModuleOptions } from '../../lib/index.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { Session, User } from '../app/user.entity.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** Boots an app with the test entities and the given audit module; resolves with it, or with the start-up error. */
async function start(auditModule: ReturnType<typeof AuditModule.forRoot>) {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        type: 'better-sqlite3',
        database: ':memory:',
        entities: [Order, Customer, User, Session, ...AuditEntities],
        synchronize: true,
      }),
      auditModule,
    ],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  closers.push(() => app.close());
  return app.init().then(
    () => app,
    (error: unknown) => error as Error,
  );
}

/** A class that is no entity of the data source. */
class Ordr {}

describe('entity and field names in the options are checked against the model at start-up', () => {
  it.each<[string, AuditModuleOptions, RegExp]>([
    ['includeEntities, a misspelt name', { includeEntities: ['Ordr'] }, /"includeEntities": "Ordr" is not an entity of the data source \(did you mean "Order"\?\)/],
    ['excludeEntities, a misspelt name', { excludeEntities: ['Custmer'] }, /"excludeEntities": "Custmer" is not an entity of the data source \(did you mean "Customer"\?\)/],
    ['includeEntities, a class that is no entity', { includeEntities: [Ordr] }, /"includeEntities": class Ordr is not an entity of the data source \(did you mean "Order"\?\)/],
    ['excludeFields, a misspelt entity', { excludeFields: { Ordr: ['note'] } }, /"excludeFields": "Ordr" is not an entity of the data source \(did you mean "Order"\?\)/],
    ['excludeFields, a table name for an entity name', { excludeFields: { orders: ['note'] } }, /"excludeFields": "orders" is not an entity of the data source \(did you mean "Order"\?\)/],
    ['excludeFields, a misspelt field', { excludeFields: { Order: ['nte'] } }, /"excludeFields": entity "Order" has no field "nte" \(did you mean "note"\?\)/],
    [
      'excludeFields, a field with no near match',
      { excludeFields: { Customer: ['zzzzzz'] } },
      /"excludeFields": entity "Customer" has no field "zzzzzz" \(its fields: code, id, name\)/,
    ],
    ['includeEntities, a name with no near match', { includeEntities: ['Invoice'] }, /"includeEntities": "Invoice" is not an entity of the data source \(its entities: Customer, Order, Session, User\)/],
  ])('%s fails start-up naming it and its near matches', async (_name, options, message) => {
    const error = await start(AuditModule.forRoot(options));
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect((error as Error).message).toMatch(message);
  });

  it.each<[string, AuditModuleOptions, RegExp]>([
    ['the same name', { includeEntities: ['Order', 'Customer'], excludeEntities: ['Order'] }, /"excludeEntities": entity "Order" is also in includeEntities/],
    ['a class and its table name', { includeEntities: [Order], excludeEntities: ['orders'] }, /"excludeEntities": entity "Order" \("orders"\) is also in includeEntities/],
  ])('an entity in both includeEntities and excludeEntities (%s) fails start-up naming it', async (_name, options, message) => {
    const error = await start(AuditModule.forRoot(options));
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect((error as Error).message).toMatch(message);
  });

  it('forRootAsync options are checked too', async () => {
    const error = await start(AuditModule.forRootAsync({ useFactory: () => ({ includeEntities: ['Ordr'] }) }));
    expect((error as Error).message).toMatch(/"Ordr" is not an entity of the data source \(did you mean "Order"\?\)/);
  });

  it('classes, entity names, table names, field paths and relation names are accepted, and take effect', async () => {
    const app = await start(
      AuditModule.forRoot({
        includeEntities: [Order, 'Customer', 'app_users'],
        excludeEntities: ['Session'],
        excludeFields: { Order: ['note', 'customer', 'deletedAt'], User: ['following', 'profile'] },
      }),
    );
    if (app instanceof Error) throw app;
    const dataSource = app.get(DataSource);
    await app.get(AuditService).runAs({ type: 'system' }, () => dataSource.getRepository(Order).save({ status: 'new', total: 1, note: 'hidden' }));
    const rows = await dataSource.getRepository(AuditLogEntity).find();
    expect(rows.map((row) => row.changes)).toEqual([
      [{ entity: 'Order', id: expect.any(String), operation: 'insert', fields: { id: { from: null, to: expect.any(Number) }, status: { from: null, to: 'new' }, total: { from: null, to: 1 } } }],
    ]);
  });
});
