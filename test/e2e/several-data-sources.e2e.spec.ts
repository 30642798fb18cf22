import 'reflect-metadata';
import { Body, Controller, Module, Param, ParseIntPipe, Patch, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditEntities,
  Audited,
  AuditInstanceEntity,
  AuditJournalEntity,
  AuditLogEntity,
  AuditModule,
  AuditService,
  type AuditModuleOptions,
} from '../../lib/index.js';
import { JournalRecovery, rowMarkerId } from '../../lib/journal/journal-recovery.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { QuietLogger } from '../support/two-data-source-instances.js';

@Controller('shop')
class ShopController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRepository(User, 'audit') private readonly users: Repository<User>,
  ) {}

  @Patch(':id/audited')
  @Audited('order.noted')
  async audited(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    await this.orders.update({ id }, { note: body.note });
    const order = await this.orders.findOneByOrFail({ id });
    order.total += 1;
    await this.orders.save(order);
    return { id };
  }

  /** Writes in both data sources: the order in the main one, a user in the audit one. */
  @Patch(':id/both')
  @Audited('order.handed-over')
  async both(@Param('id', ParseIntPipe) id: number, @Body() body: { email: string }): Promise<{ id: number }> {
    await this.orders.update({ id }, { status: 'handed-over' });
    await this.users.save(this.users.create({ email: body.email }));
    return { id };
  }

  /** More changes than a unit keeps in memory (with maxChangesPerEvent 2): the rest only in the journal. */
  @Patch('bulk/:count')
  @Audited('order.bulk-created')
  async bulk(@Param('count', ParseIntPipe) count: number): Promise<{ count: number }> {
    for (let i = 0; i < count; i++) await this.orders.save(this.orders.create({ total: i }));
    return { count };
  }

  @Patch(':id/plain')
  async plain(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    const order = await this.orders.findOneByOrFail({ id });
    order.note = body.note;
    await this.orders.save(order);
    return { id };
  }
}

interface TwoSourceApp {
  app: INestApplication;
  url: string;
  /** The app's own data source (entities, journal). */
  main: DataSource;
  /** The data source that holds audit_log. */
  audit: DataSource;
  close(): Promise<void>;
}

/** An app whose entities live in its default data source and whose audit trail lives in a second one, `audit`. */
async function twoSourceApp(main: TestDatabase, audit: TestDatabase, options: AuditModuleOptions = {}, mainEntities: Array<new () => unknown> = [AuditJournalEntity]): Promise<TwoSourceApp> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ ...main.options, entities: [Order, Customer, ...mainEntities], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities, User], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
      TypeOrmModule.forFeature([Order]),
      TypeOrmModule.forFeature([User], 'audit'),
      AuditModule.forRoot({ ...options, dataSource: 'audit' }),
    ],
    controllers: [ShopController],
  })
  class TwoSourceModule {}
  const app = await NestFactory.create(TwoSourceModule, new ExpressAdapter(), { logger: new QuietLogger('Nest', { logLevels: ['error', 'warn'] }) });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    app,
    url,
    main: app.get<DataSource>(getDataSourceToken()),
    audit: app.get<DataSource>(getDataSourceToken('audit')),
    close: () => app.close(),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(databases())('several data sources on %s', (kind) => {
  let main: TestDatabase;
  let audit: TestDatabase;
  let app: TwoSourceApp;
  let orderId: number;

  const auditRows = () => app.audit.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } });
  const patch = (path: string, json: unknown) =>
    fetch(`${app.url}${path}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });

  beforeAll(async () => {
    main = await createTestDatabase(kind);
    audit = await createTestDatabase(kind);
    app = await twoSourceApp(main, audit, { recoverAfter: 1_000 });
    orderId = (await app.main.getRepository(Order).save({ status: 'new', total: 10 })).id;
    // Its fallback event is stored once its transaction has committed: wait for it, then start clean.
    for (let i = 0; i < 100 && (await auditRows()).length === 0; i++) await sleep(20);
    expect((await auditRows()).map((row) => row.action)).toEqual(['order.created']);
    await app.audit.getRepository(AuditLogEntity).clear();
  });

  afterEach(async () => {
    await app.audit.getRepository(AuditLogEntity).clear();
  });

  afterAll(async () => {
    await app?.close();
    await main?.drop();
    await audit?.drop();
  });

  it('an @Audited handler changing an entity of the main data source gives one intent in the audit data source, with the changes', async () => {
    const response = await patch(`/shop/${orderId}/audited`, { note: 'gift' });
    expect(response.status).toBe(200);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action])).toEqual([['intent', 'order.noted']]);
    const changes = rows[0]!.changes!.map((change) => [change.entity, change.id, change.operation, change.fields]);
    expect(changes).toEqual([['Order', String(orderId), 'update', { note: { from: null, to: 'gift' }, total: { from: 10, to: 11 } }]]);
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('an undecorated write on the main data source gives a fallback event in the audit data source', async () => {
    const response = await patch(`/shop/${orderId}/plain`, { note: 'wrapped' });
    expect(response.status).toBe(200);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action, row.targetId])).toEqual([['change', 'order.updated', String(orderId)]]);
    expect(rows[0]!.changes![0]!.fields).toEqual({ note: { from: 'gift', to: 'wrapped' } });
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('a write outside any unit of work, in a transaction of the main data source, is stored in the audit data source', async () => {
    await app.main.transaction(async (manager) => {
      await manager.getRepository(Order).update({ id: orderId }, { status: 'packed' });
    });
    // Stored in the background: the event first, then its journal rows in the main data source are deleted.
    const journal = app.main.getRepository(AuditJournalEntity);
    for (let i = 0; i < 50 && ((await auditRows()).length === 0 || (await journal.count()) > 0); i++) await sleep(20);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action, row.source])).toEqual([['change', 'order.updated', 'system']]);
    expect(rows[0]!.changes![0]!.fields).toEqual({ status: { from: 'new', to: 'packed' } });
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('a handler writing in both data sources gives one intent with both changes, and leaves both journals empty', async () => {
    const response = await patch(`/shop/${orderId}/both`, { email: 'carrier@example.com' });
    expect(response.status).toBe(200);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action])).toEqual([['intent', 'order.handed-over']]);
    const changes = rows[0]!.changes!.map((change) => [change.entity, change.operation]).sort();
    expect(changes).toEqual([
      ['Order', 'update'],
      ['User', 'insert'],
    ]);
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('log() in a transaction of the main data source, outside any unit of work, claims its target\'s change there', async () => {
    const audit = app.app.get(AuditService);
    await app.main.transaction(async (manager) => {
      await manager.getRepository(Order).update({ id: orderId }, { total: 42 });
      await audit.log({ action: 'order.repriced', target: { type: 'Order', id: orderId } });
    });
    const journal = app.main.getRepository(AuditJournalEntity);
    for (let i = 0; i < 50 && ((await auditRows()).length === 0 || (await journal.count()) > 0); i++) await sleep(20);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action, row.targetId])).toEqual([['intent', 'order.repriced', String(orderId)]]);
    expect(rows[0]!.changes!.map((change) => change.fields)).toEqual([{ total: { from: 11, to: 42 } }]);
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('a transaction of the main data source that rolls back leaves no record and no journal row', async () => {
    await app.main
      .transaction(async (manager) => {
        await manager.getRepository(Order).update({ id: orderId }, { status: 'lost' });
        throw new Error('changed my mind');
      })
      .catch(() => undefined);
    await sleep(100);
    expect(await auditRows()).toEqual([]);
    expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
    expect((await app.main.getRepository(Order).findOneByOrFail({ id: orderId })).status).not.toBe('lost');
  });

  it('journal rows a dead instance left in the main data source become events in the audit data source, exactly once', async () => {
    const journal = app.main.getRepository(AuditJournalEntity);
    const old = new Date(Date.now() - 60_000);
    const unitId = '01900000-0000-7000-8000-00000000a001';
    await journal.insert({
      id: '01900000-0000-7000-8000-00000000b001',
      unitId,
      // An instance with no lease at all: long gone.
      instanceId: '01900000-0000-7000-8000-00000000c001',
      createdAt: old,
      entry: {
        source: 'http',
        request: { requestId: 'dead-request', method: 'PATCH', route: '/shop/:id/audited' },
        action: 'order.noted',
        actor: { type: 'user', id: '7' },
        changes: [{ entity: 'Order', id: String(orderId), operation: 'update', fields: { note: { from: 'a', to: 'b' } }, at: old.getTime() }],
      },
    });
    const recovery = app.app.get(JournalRecovery);
    await Promise.all([recovery.runPass(), recovery.runPass()]);
    await recovery.runPass();
    expect(await journal.count()).toBe(0);
    const rows = await auditRows();
    expect(rows.map((row) => [row.kind, row.action, row.outcome, row.requestId, row.actorId])).toEqual([
      ['intent', 'order.noted', 'unknown', 'dead-request', '7'],
    ]);
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(orderId), operation: 'update', fields: { note: { from: 'a', to: 'b' } } }]);
  });

  it('rows of an instance whose lease expired, recovered by two instances at the same moment, become events once', async () => {
    // SQLite's memory databases are not shared between apps.
    if (kind === 'sqlite') return;
    const second = await twoSourceApp(main, audit, { recoverAfter: 1_000 });
    try {
      const old = new Date(Date.now() - 60_000);
      const deadInstance = '01900000-0000-7000-8000-00000000c003';
      await app.audit.getRepository(AuditInstanceEntity).insert({ id: deadInstance, startedAt: old, heartbeatAt: old });
      const journal = app.main.getRepository(AuditJournalEntity);
      for (const n of [1, 2, 3]) {
        await journal.insert({
          id: `01900000-0000-7000-8000-00000000b10${n}`,
          unitId: `01900000-0000-7000-8000-00000000a10${n}`,
          instanceId: deadInstance,
          createdAt: new Date(),
          entry: {
            source: 'job',
            request: {},
            changes: [{ entity: 'Order', id: String(orderId), operation: 'update', fields: { note: { from: `${n}`, to: `${n + 1}` } }, at: old.getTime() + n }],
          },
        });
      }
      await Promise.all([app.app.get(JournalRecovery).runPass(), second.app.get(JournalRecovery).runPass()]);
      expect(await journal.count()).toBe(0);
      const rows = await auditRows();
      expect(rows.map((row) => [row.kind, row.action, row.source, row.changes![0]!.fields])).toEqual([
        ['change', 'order.updated', 'job', { note: { from: '1', to: '2' } }],
        ['change', 'order.updated', 'job', { note: { from: '2', to: '3' } }],
        ['change', 'order.updated', 'job', { note: { from: '3', to: '4' } }],
      ]);
      expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
      // The dead instance's lease is dropped once its journal rows are gone.
      await app.app.get(JournalRecovery).runPass();
      expect(await app.audit.getRepository(AuditInstanceEntity).countBy({ id: deadInstance })).toBe(0);
    } finally {
      await second.close();
    }
  });

  it('journal rows whose events were stored before their instance died (the marker says so) are dropped, not stored again', async () => {
    const journal = app.main.getRepository(AuditJournalEntity);
    const old = new Date(Date.now() - 60_000);
    const unitId = '01900000-0000-7000-8000-00000000a002';
    const instanceId = '01900000-0000-7000-8000-00000000c002';
    await journal.insert({
      id: '01900000-0000-7000-8000-00000000b002',
      unitId,
      instanceId,
      // Fresh until the marker is in too (the app's own timed pass runs every 500 ms here).
      createdAt: new Date(),
      entry: {
        source: 'http',
        request: { requestId: 'stored-request' },
        action: 'order.noted',
        changes: [{ entity: 'Order', id: String(orderId), operation: 'update', fields: { note: { from: 'c', to: 'd' } }, at: old.getTime() }],
      },
    });
    // What the writer leaves in the audit data source with a unit's events: a marker of the unit, deleted after the journal rows.
    await app.audit.getRepository(AuditJournalEntity).insert({
      id: unitId,
      unitId,
      instanceId,
      createdAt: old,
      entry: { source: 'system', request: {}, changes: [], stored: true },
    });
    await journal.update({ unitId }, { createdAt: old });
    await app.app.get(JournalRecovery).runPass();
    expect(await journal.count()).toBe(0);
    expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await auditRows()).toEqual([]);
  });

  it('of a unit whose parts were partly stored before its instance died, only the unstored rows become events', async () => {
    const journal = app.main.getRepository(AuditJournalEntity);
    const old = new Date(Date.now() - 60_000);
    const unitId = '01900000-0000-7000-8000-00000000a004';
    const instanceId = '01900000-0000-7000-8000-00000000c004';
    const row = (n: number) => ({
      id: `01900000-0000-7000-8000-00000000b40${n}`,
      unitId,
      instanceId,
      // Fresh while the rows go in (the app's own timed pass, every 500 ms here, must not take
      // the unit between the journal rows and the marker), aged once both are there.
      createdAt: new Date(),
      entry: {
        source: 'job',
        request: {},
        changes: [{ entity: 'Order', id: String(orderId), operation: 'update' as const, fields: { total: { from: n, to: n + 1 } }, at: old.getTime() + n }],
        spilled: true as const,
      },
    });
    await journal.insert([row(1), row(2)]);
    // The first row's events were stored (with its marker) before the instance died.
    await app.audit.getRepository(AuditJournalEntity).insert({
      id: rowMarkerId(row(1).id),
      unitId,
      instanceId: rowMarkerId(row(1).id),
      createdAt: old,
      entry: { source: 'system', request: {}, changes: [], stored: true },
    });
    await journal.update({ unitId }, { createdAt: old });
    await app.app.get(JournalRecovery).runPass();
    expect(await journal.count()).toBe(0);
    expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
    const rows = await auditRows();
    expect(rows.map((event) => event.changes![0]!.fields)).toEqual([{ total: { from: 2, to: 3 } }]);
  });
});

describe.each(databases())('several data sources, a unit past its memory bound, on %s', (kind) => {
  it('stores every change of the main data source, also those kept only in its journal, and empties the journal', async () => {
    const main = await createTestDatabase(kind);
    const audit = await createTestDatabase(kind);
    const app = await twoSourceApp(main, audit, { maxChangesPerEvent: 2 });
    try {
      const response = await fetch(`${app.url}/shop/bulk/15`, { method: 'PATCH' });
      expect(response.status).toBe(200);
      const rows = await app.audit.getRepository(AuditLogEntity).find();
      expect(new Set(rows.map((row) => `${row.kind} ${row.action}`))).toEqual(new Set(['intent order.bulk-created']));
      const totals = rows.flatMap((row) => row.changes!.map((change) => (change.fields['total'] as { to: number }).to));
      expect(totals.sort((a, b) => a - b)).toEqual(Array.from({ length: 15 }, (_, i) => i));
      expect(await app.main.getRepository(AuditJournalEntity).count()).toBe(0);
      expect(await app.audit.getRepository(AuditJournalEntity).count()).toBe(0);
    } finally {
      await app.close();
      await main.drop();
      await audit.drop();
    }
  });
});

describe.each(databases())('several data sources, start-up on %s', (kind) => {
  it('fails naming the data source that lacks the journal entity', async () => {
    const main = await createTestDatabase(kind);
    const audit = await createTestDatabase(kind);
    try {
      await expect(twoSourceApp(main, audit, {}, [])).rejects.toThrow(
        /AuditJournalEntity is not an entity of the TypeORM data source "default", whose changes the audit module captures/,
      );
    } finally {
      await main.drop();
      await audit.drop();
    }
  });

  it('fails naming an unknown data source in captureDataSources', async () => {
    const main = await createTestDatabase(kind);
    const audit = await createTestDatabase(kind);
    try {
      await expect(twoSourceApp(main, audit, { captureDataSources: ['default', 'orders'] })).rejects.toThrow(
        /Invalid AuditModule option "captureDataSources": no TypeORM data source named "orders" \(known: "default", "audit"\)/,
      );
    } finally {
      await main.drop();
      await audit.drop();
    }
  });

  it('captures only the data sources listed in captureDataSources', async () => {
    const main = await createTestDatabase(kind);
    const audit = await createTestDatabase(kind);
    const app = await twoSourceApp(main, audit, { captureDataSources: ['audit'] }, []);
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      const response = await fetch(`${app.url}/shop/${order.id}/plain`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ note: 'x' }),
      });
      expect(response.status).toBe(200);
      expect(await app.audit.getRepository(AuditLogEntity).count()).toBe(0);
    } finally {
      await app.close();
      await main.drop();
      await audit.drop();
    }
  });
});
