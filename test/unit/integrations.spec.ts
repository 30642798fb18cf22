import 'reflect-metadata';
import { Catch, ConflictException, Controller, Get, Injectable, type ArgumentsHost, type CallHandler, type CanActivate, type ExceptionFilter, type NestInterceptor } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR, ModuleRef } from '@nestjs/core';
import { ExceptionsHandler } from '@nestjs/core/exceptions/exceptions-handler.js';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import {
  BaseRpcExceptionFilter,
  ClientKafka,
  ClientMqtt,
  ClientNats,
  ClientGrpcProxy,
  ClientProxy,
  ClientRedis,
  ClientRMQ,
  ClientTCP,
  RpcException,
  type ReadPacket,
  type WritePacket,
} from '@nestjs/microservices';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BaseWsExceptionFilter, WsException } from '@nestjs/websockets';
import { firstValueFrom, map, type Observable } from 'rxjs';
import {
  AfterInsert,
  AfterUpdate,
  Column,
  DataSource,
  DeleteDateColumn,
  DeleteQueryBuilder,
  Entity,
  EntityManager,
  InsertQueryBuilder,
  PrimaryGeneratedColumn,
  UpdateQueryBuilder,
  type AfterQueryEvent,
  type BeforeQueryEvent,
  type DataSourceOptions,
  type EntitySubscriberInterface,
  type InsertEvent,
  type ObjectLiteral,
  type QueryBuilder,
} from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditContextGuard } from '../../lib/guard/audit-context.guard.js';
import { grpcMethodKind } from '../../lib/integrations/grpc-js-method-kind.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { AuditEntities, AuditModule } from '../../lib/index.js';
import { globalGuards, putGlobalGuardFirst } from '../../lib/integrations/nest-global-guards.js';
import { globalInterceptors, putGlobalInterceptorFirst } from '../../lib/integrations/nest-global-interceptors.js';
import { AuditReplyInterceptor } from '../../lib/interceptor/audit-reply.interceptor.js';
import {
  listenToTransportExceptionFilters,
  loadTransportExceptionFilter,
  stopListeningToTransportExceptionFilters,
  type TransportExceptionListener,
} from '../../lib/integrations/nest-transport-exception-filters.js';
import {
  listenToHttpExceptions,
  loadHttpExceptionsHandler,
  stopListeningToHttpExceptions,
  type HttpExceptionListener,
} from '../../lib/integrations/nest-http-exceptions-handler.js';
import { answerCallsOfGrpcClientsMadeBefore, deliverClientRepliesInSubscriberContext, loadClientGrpcProxy, loadClientProxy } from '../../lib/integrations/nest-client-proxy-context.js';
import {
  attachCommitStatements,
  commitCarriesStatements,
  postgresLiteral,
  sendWithCommit,
  takeUnsent,
} from '../../lib/integrations/typeorm-commit-statements.js';
import { currentTransactionManager, isInsideQueryBuilder, isPersistingWithEvents } from '../../lib/context/async-frame.js';
import { attachAfterQueryWait, queriesWaitForCapture, waitForCapture } from '../../lib/integrations/typeorm-after-query-wait.js';
import { attachTransactionScope } from '../../lib/integrations/typeorm-transaction-scope.js';
import { attachEntityEventHooks, broadcasterPrototype, ENTITY_EVENT_METHODS } from '../../lib/integrations/typeorm-entity-event-hooks.js';
import { attachPersistenceScope, PERSISTENCE_METHODS, persistenceOptions } from '../../lib/integrations/typeorm-persistence-scope.js';
import { keepAuditTablesOnMariaDbThroughMysqlDriver } from '../../lib/integrations/typeorm-mariadb-synchronize.js';
import { attachRawWriteTransaction, detachRawWriteTransaction, isTypeormQuery } from '../../lib/integrations/typeorm-raw-write-transaction.js';
import { attachCommitPoints, detachCommitPoints } from '../../lib/integrations/typeorm-commit-points.js';
import {
  attachWriteQueryBuilderHook,
  detachWriteQueryBuilderHook,
  locateWriteQueryBuilders,
  writeQueryBuilderShapeProblems,
  WriteQueryBuilderState,
  type WriteHook,
  type WriteKind,
} from '../../lib/integrations/typeorm-write-query-builders.js';

// Each patch of code the module does not own (lib/integrations/) against the TypeORM and
// NestJS versions installed: these fail, naming the patched surface, when a release
// changes its shape. They run on NestJS 12 + TypeORM 1 and on NestJS 11 + TypeORM 0.3.

@Entity('integration_item')
class Item {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', unique: true })
  code!: string;

  @Column({ type: 'varchar' })
  name!: string;

  @DeleteDateColumn({ type: 'datetime', nullable: true })
  deletedAt!: Date | null;
}

/** Which rows a write's WHERE clause matches, read the way the change capture reads them. */
async function rowsMatching(dataSource: DataSource, state: WriteQueryBuilderState): Promise<string[]> {
  // Under the table's own name, as the write names it.
  const probe = dataSource.manager.createQueryBuilder(Item, 'integration_item');
  state.copyConditionsTo(probe as unknown as Parameters<WriteQueryBuilderState['copyConditionsTo']>[0]);
  const rows = await probe.withDeleted().orderBy('integration_item.code').getMany();
  return rows.map((row) => row.code);
}

function expectShape(builder: object): void {
  const problems = writeQueryBuilderShapeProblems(builder as QueryBuilder<ObjectLiteral>);
  expect(problems, `TypeORM's write query builders changed shape: ${problems.join('; ')}`).toEqual([]);
}

describe('TypeORM write query builders (lib/integrations/typeorm-write-query-builders.ts)', () => {
  let dataSource: DataSource;

  beforeAll(async () => {
    dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item], synchronize: true }).initialize();
  });
  afterAll(() => dataSource.destroy());

  beforeEach(async () => {
    await dataSource.getRepository(Item).clear();
    await dataSource.getRepository(Item).insert([
      { code: 'a', name: 'A' },
      { code: 'b', name: 'B' },
      { code: 'c', name: 'C' },
    ]);
  });

  it('the update, delete, soft-delete and insert builders are found, each with its own prototype having execute', () => {
    const located = locateWriteQueryBuilders(dataSource);
    expect(
      located.map(({ kind, name }) => [kind, name]),
      'createQueryBuilder().update()/.delete()/.softDelete()/.insert() no longer give the four write query builders',
    ).toEqual([
      ['update', 'UpdateQueryBuilder'],
      ['delete', 'DeleteQueryBuilder'],
      ['soft-delete', 'SoftDeleteQueryBuilder'],
      ['insert', 'InsertQueryBuilder'],
    ]);
    expect(new Set(located.map(({ prototype }) => prototype)).size, 'two write query builders share a prototype').toBe(4);
    for (const { name, prototype } of located) {
      expect(typeof prototype.execute, `${name}.prototype.execute`).toBe('function');
    }
    const byKind = new Map(located.map(({ kind, prototype }) => [kind, prototype]));
    expect(byKind.get('update'), 'UpdateQueryBuilder.prototype').toBe(UpdateQueryBuilder.prototype);
    expect(byKind.get('delete'), 'DeleteQueryBuilder.prototype').toBe(DeleteQueryBuilder.prototype);
    expect(byKind.get('insert'), 'InsertQueryBuilder.prototype').toBe(InsertQueryBuilder.prototype);
    // restore() makes the same builder as softDelete().
    expect(Object.getPrototypeOf(dataSource.createQueryBuilder().restore()), 'restore() builder').toBe(byKind.get('soft-delete'));
  });

  it('an update exposes its entity, values, listeners flag and WHERE clause', async () => {
    const builder = dataSource.createQueryBuilder().update(Item).set({ name: 'renamed' }).where('code = :code', { code: 'b' });
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'update');
    expect(state.metadata?.name, 'UpdateQueryBuilder expressionMap.mainAlias.metadata').toBe('Item');
    expect(state.dataSource, 'UpdateQueryBuilder.connection').toBe(dataSource);
    expect(state.callListeners, 'UpdateQueryBuilder expressionMap.callListeners').toBe(true);
    expect(state.valuesSet, 'UpdateQueryBuilder expressionMap.valuesSet').toEqual({ name: 'renamed' });
    expect(state.queryRunner, 'UpdateQueryBuilder.queryRunner').toBeUndefined();
    expect(await rowsMatching(dataSource, state), 'UpdateQueryBuilder expressionMap.wheres/parameters').toEqual(['b']);

    builder.callListeners(false);
    expect(state.callListeners, 'UpdateQueryBuilder expressionMap.callListeners after callListeners(false)').toBe(false);

    const runner = dataSource.createQueryRunner();
    try {
      state.setQueryRunner(runner);
      expect(state.queryRunner, 'UpdateQueryBuilder.setQueryRunner() / .queryRunner').toBe(runner);
      state.setQueryRunner(undefined);
      expect(state.queryRunner, 'UpdateQueryBuilder.setQueryRunner(undefined)').toBeUndefined();
    } finally {
      await runner.release();
    }
  });

  it("an update by whereEntity() (TypeORM's persistence updating a row by its key) exposes the keys given", () => {
    const key = { id: 7 };
    const builder = dataSource.createQueryBuilder().update(Item).set({ name: 'renamed' }).whereEntity(key as Item);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'update');
    expect(state.whereEntities, 'UpdateQueryBuilder expressionMap.whereEntities after whereEntity()').toEqual([key]);
    const other = new WriteQueryBuilderState(dataSource.createQueryBuilder().update(Item).set({ name: 'x' }).where('id = 1') as unknown as QueryBuilder<ObjectLiteral>, 'update');
    expect(other.whereEntities, 'UpdateQueryBuilder expressionMap.whereEntities without whereEntity()').toEqual([]);
  });

  it('a delete and a soft delete expose their WHERE clause, with parameters of every form', async () => {
    const remove = dataSource.createQueryBuilder().delete().from(Item).where('code IN (:...codes)', { codes: ['a', 'c'] });
    expectShape(remove);
    const removeState = new WriteQueryBuilderState(remove as unknown as QueryBuilder<ObjectLiteral>, 'delete');
    expect(removeState.metadata?.name, 'DeleteQueryBuilder expressionMap.mainAlias.metadata').toBe('Item');
    expect(await rowsMatching(dataSource, removeState), 'DeleteQueryBuilder expressionMap.wheres/parameters').toEqual(['a', 'c']);

    const soft = dataSource.createQueryBuilder().softDelete().from(Item).where({ code: 'a' }).orWhere('name = :name', { name: 'C' });
    expectShape(soft);
    const softState = new WriteQueryBuilderState(soft as unknown as QueryBuilder<ObjectLiteral>, 'soft-delete');
    expect(softState.metadata?.name, 'SoftDeleteQueryBuilder expressionMap.mainAlias.metadata').toBe('Item');
    expect(softState.callListeners, 'SoftDeleteQueryBuilder expressionMap.callListeners').toBe(true);
    expect(await rowsMatching(dataSource, softState), 'SoftDeleteQueryBuilder expressionMap.wheres/parameters').toEqual(['a', 'c']);
  });

  it('an insert exposes its value sets, the very objects TypeORM writes the generated ids into', async () => {
    const values = [
      { code: 'd', name: 'D' },
      { code: 'e', name: 'E' },
    ];
    const builder = dataSource.createQueryBuilder().insert().into(Item).values(values);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'insert');
    expect(state.metadata?.name, 'InsertQueryBuilder expressionMap.mainAlias.metadata').toBe('Item');
    expect(state.isUpsert, 'InsertQueryBuilder expressionMap.onUpdate of a plain insert').toBe(false);
    expect(state.ignoresConflicts, 'InsertQueryBuilder expressionMap.onIgnore of a plain insert').toBe(false);
    expect(state.insertsFromSelect, 'InsertQueryBuilder expressionMap.insertFromSelect of a plain insert').toBe(false);
    const sets = state.valueSets();
    expect(sets, 'InsertQueryBuilder.getValueSets()').toHaveLength(2);
    expect(sets[0], 'InsertQueryBuilder.getValueSets() returns the objects given to values()').toBe(values[0]);
    await builder.execute();
    expect(typeof (state.valueSets()[1] as { id?: unknown }).id, 'InsertQueryBuilder writes the generated id into its value set').toBe('number');
  });

  it('an insert that does not update its entity returns no identifiers; the generated id is read from its result by the driver', async () => {
    const values = [
      { code: 'f', name: 'F' },
      { code: 'g', name: 'G' },
    ];
    const builder = dataSource.createQueryBuilder().insert().into(Item).values(values).updateEntity(false);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'insert');
    expect(state.updatesEntity, 'InsertQueryBuilder expressionMap.updateEntity after updateEntity(false)').toBe(false);
    state.returnColumns(state.metadata!.primaryColumns);
    const result = (await builder.execute()) as { identifiers: unknown[]; raw: unknown };
    expect(result.identifiers, 'InsertResult.identifiers of an insert with updateEntity(false)').toEqual([]);
    expect((values[1] as { id?: unknown }).id, 'updateEntity(false) leaves the value sets as given').toBeUndefined();
    const stored = await dataSource.getRepository(Item).findOneByOrFail({ code: 'g' });
    const row = Array.isArray(result.raw) ? (result.raw[1] as unknown) : result.raw;
    expect(dataSource.driver.createGeneratedMap(state.metadata!, row, 1, 2), 'driver.createGeneratedMap(metadata, raw, index, count)').toEqual({ id: stored.id });
  });

  it('an upsert exposes its conflict target', () => {
    const builder = dataSource.createQueryBuilder().insert().into(Item).values({ code: 'a', name: 'A2' }).orUpdate(['name'], ['code']);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'insert');
    expect(state.isUpsert, 'InsertQueryBuilder expressionMap.onUpdate of orUpdate()').toBe(true);
    expect(state.conflict, 'InsertQueryBuilder expressionMap.onUpdate.conflict').toEqual(['code']);
    expect(state.valueSets(), 'InsertQueryBuilder.getValueSets() of one object').toEqual([{ code: 'a', name: 'A2' }]);

    // What repository.upsert() builds.
    const repositoryUpsert = dataSource
      .createQueryBuilder()
      .insert()
      .into(Item)
      .values({ code: 'b', name: 'B2' })
      .orUpdate(['name'], ['code'], { skipUpdateIfNoValuesChanged: true });
    expectShape(repositoryUpsert);
    expect(new WriteQueryBuilderState(repositoryUpsert as unknown as QueryBuilder<ObjectLiteral>, 'insert').conflict).toEqual(['code']);
  });

  it('an insert that ignores conflicts says so', () => {
    const builder = dataSource.createQueryBuilder().insert().into(Item).values({ code: 'a', name: 'A3' }).orIgnore();
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as unknown as QueryBuilder<ObjectLiteral>, 'insert');
    expect(state.ignoresConflicts, 'InsertQueryBuilder expressionMap.onIgnore of orIgnore()').toBe(true);
    expect(state.isUpsert, 'InsertQueryBuilder expressionMap.onUpdate of orIgnore()').toBe(false);
  });

  const valuesFromSelect = typeof (InsertQueryBuilder.prototype as { valuesFromSelect?: unknown }).valuesFromSelect === 'function';
  it.skipIf(!valuesFromSelect)('an INSERT … SELECT is seen as such (TypeORM 1.x)', () => {
    const select = dataSource.createQueryBuilder().select(['code', 'name']).from(Item, 'source');
    const builder = (dataSource.createQueryBuilder().insert().into(Item) as unknown as { valuesFromSelect(qb: unknown): object }).valuesFromSelect(select);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder as QueryBuilder<ObjectLiteral>, 'insert');
    expect(state.insertsFromSelect, 'InsertQueryBuilder expressionMap.insertFromSelect').toBe(true);
  });

  it.skipIf(!valuesFromSelect)("an INSERT … SELECT names its columns, and its statement's count and last rowid are seen through its query runner (TypeORM 1.x)", async () => {
    await dataSource.getRepository(Item).delete({ code: 'copy-a' });
    const select = dataSource.createQueryBuilder().select("'copy-' || source.code", 'code').addSelect("source.name || ''", 'name').from(Item, 'source').where('source.code IN (:...codes)', { codes: ['a', 'b'] });
    const builder = (dataSource.createQueryBuilder().insert().into(Item, ['code', 'name']) as unknown as { valuesFromSelect(qb: unknown): QueryBuilder<ObjectLiteral> }).valuesFromSelect(select);
    expectShape(builder);
    const state = new WriteQueryBuilderState(builder, 'insert');
    expect(state.insertColumns, 'InsertQueryBuilder expressionMap.insertColumns of into(entity, columns)').toEqual(['code', 'name']);
    expect(new WriteQueryBuilderState(dataSource.createQueryBuilder().insert().into(Item) as unknown as QueryBuilder<ObjectLiteral>, 'insert').insertColumns, 'expressionMap.insertColumns of into(entity)').toEqual([]);
    expect(state.returnsRowsAnyway, 'SQLite: no RETURNING').toBe(false);

    // Asking for more columns back leaves the builder as it was once put back.
    const { restore } = state.returnColumnsFromSelect(state.metadata!.primaryColumns);
    restore();
    const map = (builder as unknown as { expressionMap: { updateEntity: boolean; extraReturningColumns: unknown[]; returning?: unknown } }).expressionMap;
    expect([map.updateEntity, map.extraReturningColumns, map.returning], 'InsertQueryBuilder expressionMap.updateEntity/extraReturningColumns/returning put back').toEqual([true, [], undefined]);

    const runner = dataSource.createQueryRunner();
    try {
      state.setQueryRunner(runner);
      const { result, statement } = await state.watchStatement(() => builder.execute());
      expect(state.queryRunner, 'the builder runs on its own query runner again').toBe(runner);
      const copies = await dataSource.getRepository(Item).find({ where: [{ code: 'copy-a' }, { code: 'copy-b' }], order: { id: 'ASC' } });
      expect(copies, 'the INSERT … SELECT ran').toHaveLength(2);
      expect(statement?.affected, "QueryResult.affected of the builder's statement (sent with useStructuredResult)").toBe(2);
      expect(statement?.raw, 'QueryResult.raw: the last rowid').toBe(copies[1]!.id);
      expect((result as { raw: unknown }).raw, 'InsertResult.raw: the last rowid').toBe(copies[1]!.id);
    } finally {
      state.setQueryRunner(undefined);
      await runner.release();
    }
  });

  it('the patched execute runs every write by criteria of the repository API through the hook, as a query builder write', async () => {
    const seen: Array<{ kind: WriteKind; inside: boolean; entity?: string }> = [];
    const rawFlags: Array<[string, boolean]> = [];
    const subscriber: EntitySubscriberInterface = {
      beforeQuery: (event: BeforeQueryEvent) => {
        if (/^\s*(insert|update|delete)/i.test(event.query)) rawFlags.push([event.query.split(' ')[0]!.toUpperCase(), isInsideQueryBuilder()]);
      },
      // A write made while another runs (as TypeORM's own, or a subscriber's) does not reach the hook
      // (the module's patch of TypeORM's Broadcaster, not installed here, makes a subscriber's its own: see below).
      afterInsert: async (event: InsertEvent<ObjectLiteral>) => {
        if ((event.entity as Partial<Item> | undefined)?.code === 'd') await event.manager.getRepository(Item).insert({ code: 'd2', name: 'D2' });
      },
    };
    const hook: WriteHook = (write, execute) => {
      seen.push({ kind: write.kind, inside: isInsideQueryBuilder(), entity: write.metadata?.name });
      return execute();
    };
    dataSource.subscribers.push(subscriber);
    attachWriteQueryBuilderHook(dataSource, hook);
    try {
      const items = dataSource.getRepository(Item);
      await items.update({ code: 'a' }, { name: 'A2' });
      await items.delete({ code: 'b' });
      await items.softDelete({ code: 'c' });
      await items.restore({ code: 'c' });
      await items.insert({ code: 'd', name: 'D' });
      await items.upsert({ code: 'a', name: 'A3' }, ['code']);
      await dataSource.query(`UPDATE integration_item SET name = 'raw' WHERE code = 'a'`);
    } finally {
      detachWriteQueryBuilderHook(dataSource, hook);
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(subscriber), 1);
    }
    expect(seen, 'the hook did not see exactly the writes of the repository API (and none of the writes made while one runs)').toEqual([
      { kind: 'update', inside: false, entity: 'Item' },
      { kind: 'delete', inside: false, entity: 'Item' },
      { kind: 'soft-delete', inside: false, entity: 'Item' },
      { kind: 'soft-delete', inside: false, entity: 'Item' },
      { kind: 'insert', inside: false, entity: 'Item' },
      { kind: 'insert', inside: false, entity: 'Item' },
    ]);
    expect(rawFlags, 'statements of query builders are told from SQL run by hand').toEqual([
      ['UPDATE', true],
      ['DELETE', true],
      ['UPDATE', true],
      ['UPDATE', true],
      ['INSERT', true],
      ['INSERT', true],
      ['INSERT', true],
      ['UPDATE', false],
    ]);

    expect(await dataSource.getRepository(Item).countBy({ code: 'd2' }), 'the nested insert ran').toBe(1);

    // Detached: the patch stays, inert.
    await dataSource.getRepository(Item).update({ code: 'a' }, { name: 'A4' });
    expect(seen, 'a detached hook is still called').toHaveLength(6);
  });
});

describe('TypeORM EntityManager persistence methods (lib/integrations/typeorm-persistence-scope.ts)', () => {
  let dataSource: DataSource;
  /** Each SQL statement the data source ran, with whether it ran inside a persistence with events. */
  const statements: Array<[string, boolean]> = [];

  beforeAll(async () => {
    dataSource = await new DataSource({
      type: 'better-sqlite3',
      database: ':memory:',
      entities: [Item],
      synchronize: true,
      logging: ['query'],
      logger: { logQuery: (query: string) => void statements.push([query.split(' ')[0]!, isPersistingWithEvents(dataSource)]), logQueryError: () => undefined, logQuerySlow: () => undefined, logSchemaBuild: () => undefined, logMigration: () => undefined, log: () => undefined },
    }).initialize();
    attachPersistenceScope(dataSource);
  });
  afterAll(() => dataSource.destroy());

  it('save, remove, softRemove and recover exist, are patched once, and run their writes inside the scope, unless called with { listeners: false }', async () => {
    for (const name of PERSISTENCE_METHODS) expect(typeof EntityManager.prototype[name], `EntityManager.prototype.${name}`).toBe('function');
    const patched = PERSISTENCE_METHODS.map((name) => EntityManager.prototype[name]);
    attachPersistenceScope(dataSource);
    expect(PERSISTENCE_METHODS.map((name) => EntityManager.prototype[name]), 'patched a second time').toEqual(patched);

    const repository = dataSource.getRepository(Item);
    const writes = async (write: () => Promise<unknown>) => {
      statements.length = 0;
      await write();
      return statements.filter(([verb]) => ['INSERT', 'UPDATE', 'DELETE'].includes(verb));
    };
    const item = repository.create({ code: 'p1', name: 'One' });
    expect(await writes(() => repository.save(item)), 'save() with events').toEqual([['INSERT', true]]);
    item.name = 'Uno';
    expect(await writes(() => dataSource.manager.save(Item, item)), 'save(target, entity) with events').toEqual([['UPDATE', true]]);
    item.name = 'Eins';
    expect(await writes(() => dataSource.manager.save(item, { listeners: false })), 'save(entity, { listeners: false })').toEqual([['UPDATE', false]]);
    item.name = 'One';
    expect(await writes(() => dataSource.manager.save('Item', item, { listeners: false })), "save('Item', entity, { listeners: false })").toEqual([['UPDATE', false]]);
    expect(await writes(() => repository.softRemove(item)), 'softRemove() with events').toEqual([['UPDATE', true]]);
    expect(await writes(() => repository.recover(item, { listeners: false })), 'recover() without').toEqual([['UPDATE', false]]);
    expect(await writes(() => repository.remove(item)), 'remove() with events').toEqual([['DELETE', true]]);
    expect(await writes(() => repository.insert({ code: 'p2', name: 'Two' })), 'insert() is no persistence').toEqual([['INSERT', false]]);
    expect(isPersistingWithEvents(dataSource), 'outside any call').toBe(false);
  });

  it('reads the options where TypeORM does', () => {
    const options = { listeners: false };
    const schema = { '@instanceof': Symbol.for('EntitySchema') };
    expect(persistenceOptions([{ id: 1 }])).toBeUndefined();
    expect(persistenceOptions([{ id: 1 }, options])).toBe(options);
    expect(persistenceOptions([[{ id: 1 }], options])).toBe(options);
    expect(persistenceOptions([Item, { id: 1 }, options])).toBe(options);
    expect(persistenceOptions(['Item', { id: 1 }, options])).toBe(options);
    expect(persistenceOptions([schema, { id: 1 }, options])).toBe(options);
    expect(persistenceOptions([Item, { id: 1 }])).toBeUndefined();
  });
});

describe('TypeORM EntityManager.prototype.transaction (lib/integrations/typeorm-transaction-scope.ts)', () => {
  let dataSource: DataSource;

  beforeAll(async () => {
    dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item], synchronize: true }).initialize();
  });
  afterAll(() => dataSource.destroy());

  it('exists and calls its callback with the transaction manager, which currentTransactionManager() returns inside it', async () => {
    expect(typeof EntityManager.prototype.transaction, 'EntityManager.prototype.transaction').toBe('function');
    attachTransactionScope(dataSource);
    expect(currentTransactionManager(), 'currentTransactionManager() outside any transaction').toBeUndefined();

    const seen: Array<{ active: boolean | undefined; current: boolean }> = [];
    await dataSource.transaction(async (manager) => {
      seen.push({ active: manager.queryRunner?.isTransactionActive, current: currentTransactionManager() === manager });
      await manager.getRepository(Item).insert({ code: 'x', name: 'X' });
    });
    await dataSource.manager.transaction('SERIALIZABLE', async (manager) => {
      seen.push({ active: manager.queryRunner?.isTransactionActive, current: currentTransactionManager() === manager });
      // A nested transaction of the same manager: its manager is the current one inside it.
      await manager.transaction(async (inner) => {
        seen.push({ active: inner.queryRunner?.isTransactionActive, current: currentTransactionManager() === inner });
      });
    });
    expect(
      seen,
      'EntityManager.prototype.transaction no longer calls its callback with a manager whose queryRunner.isTransactionActive is true, or currentTransactionManager() is not that manager',
    ).toEqual([
      { active: true, current: true },
      { active: true, current: true },
      { active: true, current: true },
    ]);
    expect(currentTransactionManager(), 'currentTransactionManager() after the transactions').toBeUndefined();
    expect(await dataSource.getRepository(Item).countBy({ code: 'x' }), 'the transaction committed').toBe(1);
  });
});

/** An entity whose listeners note where they run. */
@Entity('integration_listened')
class Listened {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar' })
  code!: string;

  @DeleteDateColumn({ type: 'datetime', nullable: true })
  deletedAt!: Date | null;

  @AfterInsert()
  inserted(): void {
    listenerCalls.push(['listener afterInsert', isInsideQueryBuilder(), listenedPersisting()]);
  }

  @AfterUpdate()
  updated(): void {
    listenerCalls.push(['listener afterUpdate', isInsideQueryBuilder(), listenedPersisting()]);
  }
}

/** Each entity listener call of `Listened`, with whether it ran inside a query builder's write and inside a persistence with events. */
const listenerCalls: Array<[string, boolean, boolean]> = [];
let listenedPersisting: () => boolean = () => false;

describe('TypeORM Broadcaster entity events (lib/integrations/typeorm-entity-event-hooks.ts)', () => {
  let dataSource: DataSource;
  /** Each subscriber hook called, with whether it ran inside a query builder's write and inside a persistence with events. */
  const calls: Array<[string, boolean, boolean]> = [];
  const note = (event: string) => () => void calls.push([event, isInsideQueryBuilder(), isPersistingWithEvents(dataSource)]);
  const HOOKS = ['beforeInsert', 'afterInsert', 'beforeUpdate', 'afterUpdate', 'beforeRemove', 'afterRemove', 'beforeSoftRemove', 'afterSoftRemove', 'beforeRecover', 'afterRecover'];
  const identity: WriteHook = (_write, execute) => execute();

  beforeAll(async () => {
    dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Listened], synchronize: true }).initialize();
    listenedPersisting = () => isPersistingWithEvents(dataSource);
    const subscriber: EntitySubscriberInterface = Object.fromEntries(HOOKS.map((hook) => [hook, note(hook)]));
    dataSource.subscribers.push({ ...subscriber, listenTo: () => Listened });
    attachWriteQueryBuilderHook(dataSource, identity);
    attachPersistenceScope(dataSource);
    attachEntityEventHooks(dataSource);
  });
  afterAll(async () => {
    detachWriteQueryBuilderHook(dataSource, identity);
    await dataSource.destroy();
  });
  beforeEach(() => {
    calls.length = 0;
    listenerCalls.length = 0;
  });

  it('the entity event methods exist on the Broadcaster a query runner has, and are patched once', () => {
    const proto = broadcasterPrototype(dataSource);
    expect(proto.constructor.name, "a query runner's broadcaster").toBe('Broadcaster');
    for (const name of ENTITY_EVENT_METHODS) expect(typeof proto[name], `Broadcaster.prototype.${name}`).toBe('function');
    const patched = ENTITY_EVENT_METHODS.map((name) => proto[name]);
    attachEntityEventHooks(dataSource);
    expect(ENTITY_EVENT_METHODS.map((name) => proto[name]), 'patched a second time').toEqual(patched);
  });

  it("the hooks of a query builder's write, of a persistence and entity listeners are called, outside the write's and the persistence's marks", async () => {
    const repository = dataSource.getRepository(Listened);
    await repository.insert(repository.create({ code: 'a' }));
    const [row] = await repository.find();
    await repository.update({ id: row!.id }, { code: 'b' });
    await repository.softDelete({ id: row!.id });
    await repository.restore({ id: row!.id });
    await repository.delete({ id: row!.id });
    const saved = await repository.save(repository.create({ code: 'c' }));
    saved.code = 'd';
    await repository.save(saved);
    await repository.softRemove(saved);
    await repository.recover(saved);
    await repository.remove(saved);
    const queryBuilderHooks = ['beforeInsert', 'afterInsert', 'beforeUpdate', 'afterUpdate', 'beforeSoftRemove', 'afterSoftRemove', 'beforeRecover', 'afterRecover', 'beforeRemove', 'afterRemove'];
    const persistenceHooks = ['beforeInsert', 'afterInsert', 'beforeUpdate', 'afterUpdate', 'beforeSoftRemove', 'afterSoftRemove', 'beforeRecover', 'afterRecover', 'beforeRemove', 'afterRemove'];
    expect(calls, "the subscriber's hooks ran inside a query builder's write or a persistence's scope").toEqual([...queryBuilderHooks, ...persistenceHooks].map((hook) => [hook, false, false]));
    expect(listenerCalls, 'the entity listeners ran inside a write').toEqual([
      ['listener afterInsert', false, false],
      ['listener afterInsert', false, false],
      ['listener afterUpdate', false, false],
    ]);
  });

  it("the hooks of a write's after-event run once the work the write was given is done, and the write waits for them", async () => {
    const order: string[] = [];
    const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
    const subscriber: EntitySubscriberInterface = {
      listenTo: () => Listened,
      afterInsert: async () => {
        order.push('afterInsert');
        await tick();
        order.push('afterInsert done');
      },
      afterUpdate: async () => {
        order.push('afterUpdate');
        await tick();
        order.push('afterUpdate done');
      },
      afterRemove: async () => {
        order.push('afterRemove');
        await tick();
        order.push('afterRemove done');
      },
    };
    const gated: WriteHook = (write, execute) =>
      execute(async () => {
        order.push(`${write.kind} statement done`);
        await tick();
        order.push(`${write.kind} work done`);
      });
    dataSource.subscribers.push(subscriber);
    attachWriteQueryBuilderHook(dataSource, gated);
    try {
      const repository = dataSource.getRepository(Listened);
      await repository.insert([{ code: 'x' }, { code: 'y' }]);
      order.push('insert resolved');
      await repository.update({ code: 'x' }, { code: 'z' });
      order.push('update resolved');
      await repository.delete({ code: 'z' });
      order.push('delete resolved');
    } finally {
      attachWriteQueryBuilderHook(dataSource, identity);
      dataSource.subscribers.splice(dataSource.subscribers.indexOf(subscriber), 1);
    }
    expect(order).toEqual([
      'insert statement done',
      'insert work done',
      'afterInsert',
      'afterInsert',
      'afterInsert done',
      'afterInsert done',
      'insert resolved',
      'update statement done',
      'update work done',
      'afterUpdate',
      'afterUpdate done',
      'update resolved',
      'delete statement done',
      'delete work done',
      'afterRemove',
      'afterRemove done',
      'delete resolved',
    ]);
  });
});

describe('TypeORM DataSource.synchronize (lib/integrations/typeorm-mariadb-synchronize.ts)', () => {
  it('exists, builds the schema from the entity metadata, and leaves out an entity whose synchronize flag is false', async () => {
    keepAuditTablesOnMariaDbThroughMysqlDriver();
    expect(typeof DataSource.prototype.synchronize, 'DataSource.prototype.synchronize').toBe('function');
    const dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item] }).initialize();
    try {
      const metadata = dataSource.getMetadata(Item);
      expect(metadata.synchronize, "an entity's metadata has a synchronize flag, true by default").toBe(true);
      metadata.synchronize = false;
      await dataSource.synchronize();
      const runner = dataSource.createQueryRunner();
      expect(await runner.hasTable(metadata.tablePath), 'synchronize() created the table of an entity whose synchronize flag is false').toBe(false);
      metadata.synchronize = true;
      await dataSource.synchronize();
      expect(await runner.hasTable(metadata.tablePath), 'synchronize() did not create the table of an entity once its flag is true again').toBe(true);
      await runner.release();
    } finally {
      await dataSource.destroy();
    }
  });

  it("has the MySQL driver map a uuid column to native uuid only while its uuidColumnTypeSuported flag is true", () => {
    // The module's pass on MariaDB sets that flag (and the metadata's column types) so that the
    // audit tables' uuid columns keep the representation the database has.
    const driver = new DataSource({ type: 'mariadb', host: '127.0.0.1', database: 'unused' }).driver as unknown as {
      uuidColumnTypeSuported?: boolean;
      normalizeType(column: { type: string }): string;
    };
    expect(driver.uuidColumnTypeSuported, "the MySQL driver's uuidColumnTypeSuported flag, false before it connects").toBe(false);
    expect(driver.normalizeType({ type: 'uuid' })).toBe('varchar');
    driver.uuidColumnTypeSuported = true;
    expect(driver.normalizeType({ type: 'uuid' })).toBe('uuid');
  });
});

describe('TypeORM DataSource.query (lib/integrations/typeorm-raw-write-transaction.ts), on SQLite', () => {
  it('is not wrapped: TypeORM runs every query of a SQLite data source on one connection', async () => {
    const dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item], synchronize: true }).initialize();
    try {
      expect(isTypeormQuery(dataSource.query), 'DataSource.prototype.query no longer reads as running on a runner of its own when given none').toBe(true);
      expect(attachRawWriteTransaction(dataSource, { writes: () => true, started: () => undefined, beforeCommit: () => undefined, committed: () => undefined, rollingBack: () => undefined })).toBe(false);
      expect(Object.prototype.hasOwnProperty.call(dataSource, 'query')).toBe(false);
    } finally {
      await dataSource.destroy();
    }
  });
});

describe("TypeORM query runner transactionDepth and savepoint names (read by ChangeCapture.rolledBackToTypeormSavepoint)", () => {
  it('counts nested transactions, and a nested start sets the savepoint typeorm_<depth before it>', async () => {
    const dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item], synchronize: true }).initialize();
    const runner = dataSource.createQueryRunner();
    const sent: string[] = [];
    const query = runner.query.bind(runner);
    runner.query = ((sql: string, ...rest: never[]) => (sent.push(sql), query(sql, ...rest))) as typeof runner.query;
    const depth = (): unknown => (runner as unknown as { transactionDepth?: unknown }).transactionDepth;
    try {
      expect(depth()).toBe(0);
      await runner.startTransaction();
      expect(depth()).toBe(1);
      await runner.startTransaction();
      expect(depth()).toBe(2);
      expect(sent.filter((sql) => /savepoint/i.test(sql))).toEqual(['SAVEPOINT typeorm_1']);
      await runner.query('ROLLBACK TO SAVEPOINT typeorm_1');
      await runner.commitTransaction();
      expect(depth()).toBe(1);
      await runner.commitTransaction();
      expect(depth()).toBe(0);
    } finally {
      await runner.release();
      await dataSource.destroy();
    }
  });
});

describe('TypeORM query runner query (lib/integrations/typeorm-commit-points.ts), on SQLite', () => {
  it('asks about each statement sent in a transaction, TypeORM’s own included, and runs the hooks around one that ends it', async () => {
    const dataSource = await new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [Item], synchronize: true }).initialize();
    const calls: string[] = [];
    try {
      expect(
        attachCommitPoints(dataSource, {
          ending: (_runner, sql) => {
            calls.push(`ending ${sql}`);
            return sql === 'end' ? { ends: 'commit', reopens: false } : undefined;
          },
          before: () => void calls.push('before'),
          after: (_runner, _end, ok) => void calls.push(`after ${ok}`),
        }),
      ).toBe(true);
      const runner = dataSource.createQueryRunner();
      await runner.query('SELECT 1');
      await runner.startTransaction();
      await runner.query('SELECT 2');
      await runner.query('end');
      await runner.query('SELECT 3');
      await runner.commitTransaction().catch(() => undefined);
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      // TypeORM marks the runner in a transaction before its BEGIN, and its commitTransaction()
      // sends its COMMIT through query() too: the hooks tell those apart.
      // (SQLite refuses that COMMIT, with no transaction open: a ROLLBACK follows, asked about as well.)
      expect(calls.slice(0, 7), 'QueryRunner.query is no longer what a statement sent on a runner goes through').toEqual([
        'ending BEGIN TRANSACTION',
        'ending SELECT 2',
        'ending end',
        'before',
        'after true',
        'ending SELECT 3',
        'ending COMMIT',
      ]);
      calls.length = 0;
      detachCommitPoints(dataSource);
      await runner.startTransaction();
      await runner.query('end');
      await runner.commitTransaction().catch(() => undefined);
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      expect(calls).toEqual([]);
    } finally {
      await dataSource.destroy();
    }
  });
});

/** A table of every database's types, for the suites on PostgreSQL and MariaDB. */
@Entity('integration_raw_item')
class RawItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 20 })
  code!: string;

  @Column({ type: 'varchar', length: 20 })
  name!: string;
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('TypeORM DataSource.query (lib/integrations/typeorm-raw-write-transaction.ts), on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const hookCalls: string[] = [];
  const hooks = {
    writes: (sql: string) => sql.startsWith('UPDATE'),
    started: () => void hookCalls.push('started'),
    beforeCommit: () => void hookCalls.push('beforeCommit'),
    committed: () => void hookCalls.push('committed'),
    rollingBack: () => void hookCalls.push('rollingBack'),
  };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await new DataSource({ ...db.options, entities: [RawItem], synchronize: true } as DataSourceOptions).initialize();
    await dataSource.getRepository(RawItem).insert({ code: 'q', name: 'Q' });
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  /** Each statement the data source's query runners run (its first two words), and whether the runner had a transaction open then. */
  async function statementsOf(work: () => Promise<unknown>): Promise<Array<{ sql: string; inTransaction: boolean }>> {
    const runner = dataSource.createQueryRunner();
    let proto = Object.getPrototypeOf(runner) as { query: (this: { isTransactionActive: boolean }, ...args: unknown[]) => Promise<unknown> };
    while (!Object.prototype.hasOwnProperty.call(proto, 'query')) proto = Object.getPrototypeOf(proto) as typeof proto;
    await runner.release();
    const original = proto.query;
    const seen: Array<{ sql: string; inTransaction: boolean }> = [];
    proto.query = function (...args: unknown[]) {
      seen.push({ sql: String(args[0]).trim().split(/\s+/).slice(0, 2).join(' '), inTransaction: this.isTransactionActive });
      return original.apply(this, args);
    };
    try {
      await work();
    } finally {
      proto.query = original;
    }
    return seen.filter((statement) => !/^(SELECT version|SHOW|SET)/i.test(statement.sql));
  }

  it('creates its own query runner when given none, and the wrapper runs the writes it is told of between a BEGIN and a COMMIT of its own, with the hooks around them', async () => {
    expect(isTypeormQuery(dataSource.query), 'DataSource.prototype.query no longer reads as running on a runner of its own when given none').toBe(true);
    expect(attachRawWriteTransaction(dataSource, hooks)).toBe(true);
    const table = kind === 'postgres' ? `"${(db.options as { schema: string }).schema}".integration_raw_item` : 'integration_raw_item';
    const update = `UPDATE ${table} SET name = 'R' WHERE code = 'q'`;
    const first = update.split(/\s+/).slice(0, 2).join(' ');
    const begin = kind === 'postgres' ? 'BEGIN' : 'START TRANSACTION';
    try {
      const runner = dataSource.createQueryRunner();
      const wrappedCalls = [
        { sql: begin, inTransaction: false },
        { sql: first, inTransaction: true },
        { sql: 'COMMIT', inTransaction: true },
      ];
      const seen = {
        dataSource: await statementsOf(() => dataSource.query(update)),
        manager: await statementsOf(() => dataSource.manager.query(update)),
        repository: await statementsOf(() => dataSource.getRepository(RawItem).query(update)),
        read: await statementsOf(() => dataSource.query('SELECT 1')),
        ownRunner: await statementsOf(() => dataSource.query(update, [], runner)),
      };
      await runner.release();
      expect(seen, 'DataSource.query (or manager/repository.query) no longer runs a wrapped write in a transaction, or wraps what it must not').toEqual({
        dataSource: wrappedCalls,
        manager: wrappedCalls,
        repository: wrappedCalls,
        read: [{ sql: 'SELECT 1', inTransaction: false }],
        ownRunner: [{ sql: first, inTransaction: false }],
      });
      expect(hookCalls.splice(0)).toEqual(['started', 'beforeCommit', 'committed', 'started', 'beforeCommit', 'committed', 'started', 'beforeCommit', 'committed']);
      // A write that fails: its error, the transaction rolled back, the connection back in the pool.
      await expect(dataSource.query(`UPDATE ${table} SET nothing = 1`)).rejects.toThrow(/nothing/);
      expect(hookCalls.splice(0)).toEqual(['started', 'rollingBack']);
      expect(await dataSource.query(update), 'a write after a failed one').toBeDefined();
      expect(hookCalls.splice(0)).toEqual(['started', 'beforeCommit', 'committed']);
    } finally {
      detachRawWriteTransaction(dataSource);
    }
    expect(Object.prototype.hasOwnProperty.call(dataSource, 'query'), 'detached: the prototype\'s query again').toBe(false);
  });

  it('leaves alone a query another library wrapped first (it hands the runner of a transaction of its own context)', async () => {
    const context: { runner?: ReturnType<DataSource['createQueryRunner']> } = {};
    const typeorms = dataSource.query;
    const theirs = function (this: DataSource, query: string, parameters?: unknown[], queryRunner?: ReturnType<DataSource['createQueryRunner']>) {
      return typeorms.call(this, query, parameters, queryRunner ?? context.runner);
    };
    Object.defineProperty(dataSource, 'query', { value: theirs, configurable: true, writable: true });
    try {
      expect(attachRawWriteTransaction(dataSource, hooks), 'attached over a query that is not TypeORM\'s own').toBe(false);
      expect(dataSource.query).toBe(theirs);
    } finally {
      delete (dataSource as { query?: unknown }).query;
    }
  });
});

describe('NestJS transport exception filters (lib/integrations/nest-transport-exception-filters.ts)', () => {
  const listeners: TransportExceptionListener[] = [];
  afterEach(() => {
    for (const listener of listeners.splice(0)) stopListeningToTransportExceptionFilters(listener);
  });

  /** A listener that settles the call keyed by `key`, once `release()` is called. */
  function holdCall(key: object) {
    let release!: () => void;
    const stored = new Promise<void>((resolve) => (release = resolve));
    const calls: unknown[] = [];
    const listener: TransportExceptionListener = (host, exception) => {
      if (host.getArgByIndex(1) !== key) return undefined;
      calls.push(exception);
      return stored;
    };
    listeners.push(listener);
    return { listener, calls, release };
  }

  it('BaseRpcExceptionFilter.prototype.catch and BaseWsExceptionFilter.prototype.catch exist and are the ones patched', async () => {
    expect(typeof BaseRpcExceptionFilter.prototype.catch, '@nestjs/microservices BaseRpcExceptionFilter.prototype.catch').toBe('function');
    expect(typeof BaseWsExceptionFilter.prototype.catch, '@nestjs/websockets BaseWsExceptionFilter.prototype.catch').toBe('function');
    expect(await loadTransportExceptionFilter('rpc'), 'the filter loaded for rpc').toBe(BaseRpcExceptionFilter);
    expect(await loadTransportExceptionFilter('ws'), 'the filter loaded for ws').toBe(BaseWsExceptionFilter);
  });

  it('an RPC error leaves BaseRpcExceptionFilter only after the listener stored its call, unchanged', async () => {
    const context = { pattern: 'orders.create' };
    const { listener, calls, release } = holdCall(context);
    await listenToTransportExceptionFilters(listener);
    const exception = new RpcException('denied');
    const host = new ExecutionContextHost([{ id: 1 }, context]);
    host.setType('rpc');
    const result = new BaseRpcExceptionFilter().catch(exception, host) as Observable<unknown>;
    let settled = false;
    const reply = firstValueFrom(result).then(
      () => 'no error',
      (error: unknown) => {
        settled = true;
        return error;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls, 'BaseRpcExceptionFilter.prototype.catch did not ask the listener').toEqual([exception]);
    expect(settled, 'the RPC error left before its call was stored').toBe(false);
    release();
    expect(await reply, 'BaseRpcExceptionFilter.prototype.catch result').toEqual({ status: 'error', message: 'denied' });
  });

  it('a WebSocket error is emitted by BaseWsExceptionFilter only after the listener stored its call, unchanged', async () => {
    const payload = { id: 7 };
    const { listener, calls, release } = holdCall(payload);
    await listenToTransportExceptionFilters(listener);
    const emitted: Array<[string, unknown]> = [];
    const client = { emit: (event: string, data: unknown) => emitted.push([event, data]) };
    const host = new ExecutionContextHost([client, payload]);
    host.setType('ws');
    const exception = new WsException('denied');
    new BaseWsExceptionFilter().catch(exception, host);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls, 'BaseWsExceptionFilter.prototype.catch did not ask the listener').toEqual([exception]);
    expect(emitted, 'the WebSocket error was emitted before its call was stored').toEqual([]);
    release();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(emitted, 'BaseWsExceptionFilter.prototype.catch emission').toEqual([['exception', expect.objectContaining({ status: 'error', message: 'denied' })]]);
  });
});

/** Answers a refused request 422, as an app's global filter would. */
@Catch(ConflictException)
class RefusedFilter implements ExceptionFilter {
  catch(_exception: ConflictException, host: ArgumentsHost): void {
    host.switchToHttp().getResponse<{ status(code: number): { json(body: unknown): void } }>().status(422).json({ refused: true });
  }
}

@Controller('surface')
class ThrowingController {
  static readonly thrown = new ConflictException('refused');

  @Get()
  refuse(): never {
    throw ThrowingController.thrown;
  }
}

describe('NestJS HTTP exceptions handler (lib/integrations/nest-http-exceptions-handler.ts)', () => {
  const listeners: HttpExceptionListener[] = [];
  afterEach(() => {
    for (const listener of listeners.splice(0)) stopListeningToHttpExceptions(listener);
  });

  it('ExceptionsHandler.prototype.next exists and is the one patched', async () => {
    expect(typeof ExceptionsHandler.prototype.next, '@nestjs/core ExceptionsHandler.prototype.next').toBe('function');
    expect(await loadHttpExceptionsHandler(), 'the class loaded').toBe(ExceptionsHandler);
    const listener: HttpExceptionListener = () => undefined;
    listeners.push(listener);
    await listenToHttpExceptions(listener);
    const patched = ExceptionsHandler.prototype.next;
    await listenToHttpExceptions(listener);
    expect(ExceptionsHandler.prototype.next, 'ExceptionsHandler.prototype.next was patched twice').toBe(patched);
  });

  it("a route's exception reaches the listener, with the request, before the app's filter answers, which it then does unchanged", async () => {
    const seen: Array<{ exception: unknown; type: string; path: unknown; answered: boolean }> = [];
    const listener: HttpExceptionListener = (host, exception) => {
      const request = host.getArgByIndex<{ url?: string }>(0);
      const response = host.getArgByIndex<{ headersSent?: boolean }>(1);
      seen.push({ exception, type: host.getType(), path: request.url, answered: response.headersSent === true });
    };
    listeners.push(listener);
    await listenToHttpExceptions(listener);
    const moduleRef = await Test.createTestingModule({ controllers: [ThrowingController], providers: [{ provide: APP_FILTER, useClass: RefusedFilter }] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      await app.listen(0, '127.0.0.1');
      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      const response = await fetch(`${url}/surface`);
      expect([response.status, await response.json()], "the app's filter's answer").toEqual([422, { refused: true }]);
      expect(seen, 'the listener was not told of the route\'s exception (the router no longer hands it to ExceptionsHandler.prototype.next)').toEqual([
        { exception: ThrowingController.thrown, type: 'http', path: '/surface', answered: false },
      ]);
      expect(seen[0]!.exception, 'the exception the listener got is not the one thrown').toBe(ThrowingController.thrown);
    } finally {
      await app.close();
    }
  });

  it('a listener that throws does not keep the exception from its filter', async () => {
    const listener: HttpExceptionListener = () => {
      throw new Error('listener failed');
    };
    listeners.push(listener);
    await listenToHttpExceptions(listener);
    const handled: unknown[] = [];
    const handler = new ExceptionsHandler();
    handler.setCustomFilters([{ exceptionMetatypes: [], func: (exception: unknown) => void handled.push(exception) }] as never);
    const exception = new ConflictException('refused');
    handler.next(exception, new ExecutionContextHost([{}, {}]));
    expect(handled, 'the custom filter did not get the exception').toEqual([exception]);
  });
});

describe('NestJS ClientProxy send and emit (lib/integrations/nest-client-proxy-context.ts)', () => {
  /** Where each piece of code runs: the subscriber's context, or the connection's. */
  const where = new AsyncLocalStorage<string>();

  /** A client whose connection calls back in the context it was opened in, as a socket does. */
  class OneConnectionClient extends ClientProxy {
    readonly replies: Array<(packet: WritePacket) => void> = [];
    readonly events: Array<{ packet: ReadPacket; done: (value: unknown) => void }> = [];
    cancelled = 0;
    private connection?: { deliver: (fn: () => void) => void };
    async connect(): Promise<void> {
      // The first caller's context is the connection's from then on.
      this.connection ??= { deliver: where.run('connection', () => AsyncLocalStorage.bind((fn: () => void) => fn())) };
    }
    close(): void {}
    unwrap<T>(): T {
      return undefined as T;
    }
    override on(): void {}
    protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
      this.replies.push((reply) => this.connection!.deliver(() => callback(reply)));
      return () => this.cancelled++;
    }
    protected dispatchEvent<T>(packet: ReadPacket): Promise<T> {
      return new Promise<T>((resolve) => this.events.push({ packet, done: (value) => this.connection!.deliver(() => resolve(value as T)) }));
    }
  }

  beforeAll(async () => {
    expect(await deliverClientRepliesInSubscriberContext(), '@nestjs/microservices is installed').toBe(true);
  });

  it('ClientProxy.prototype.send and emit exist, are the ones patched (once), and every transport\'s client uses them', async () => {
    expect(await loadClientProxy(), 'the class loaded').toBe(ClientProxy);
    const { send, emit } = ClientProxy.prototype;
    for (const method of [send, emit]) expect(typeof method, 'ClientProxy.prototype.send / emit').toBe('function');
    await deliverClientRepliesInSubscriberContext();
    expect(ClientProxy.prototype.send, 'patched a second time').toBe(send);
    expect(ClientProxy.prototype.emit, 'patched a second time').toBe(emit);
    for (const client of [ClientTCP, ClientRedis, ClientNats, ClientMqtt, ClientRMQ, ClientKafka]) {
      expect(client.prototype.send, `${client.name}.prototype.send is not ClientProxy's`).toBe(send);
      expect(client.prototype.emit, `${client.name}.prototype.emit is not ClientProxy's`).toBe(emit);
    }
  });

  it('a reply of send() reaches the operators after it in the subscriber\'s context, the value unchanged, at once', async () => {
    const client = new OneConnectionClient();
    const seen: Array<[string | undefined, unknown]> = [];
    const subscribe = (who: string) =>
      where.run(who, () =>
        client
          .send<number>('price', { who })
          .pipe(map((value) => [where.getStore(), value] as [string | undefined, unknown]))
          .subscribe({ next: (entry) => seen.push(entry), complete: () => seen.push([where.getStore(), 'complete']) }),
      );
    subscribe('alice');
    await new Promise((resolve) => setTimeout(resolve, 5));
    subscribe('bob');
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(client.replies, 'ClientProxy.prototype.send no longer calls publish').toHaveLength(2);
    client.replies[1]!({ response: 2, isDisposed: false });
    expect(seen, 'the reply was not delivered synchronously').toEqual([['bob', 2]]);
    client.replies[1]!({ response: 3, isDisposed: true });
    client.replies[0]!({ response: 1, isDisposed: true });
    expect(seen).toEqual([
      ['bob', 2],
      ['bob', 3],
      ['bob', 'complete'],
      ['alice', 1],
      ['alice', 'complete'],
    ]);
    // Outside any context: not the connection's either.
    const outside: unknown[] = [];
    client.send<number>('price', {}).subscribe((value) => outside.push([where.getStore(), value]));
    await new Promise((resolve) => setTimeout(resolve, 5));
    client.replies[2]!({ response: 4, isDisposed: true });
    expect(outside).toEqual([[undefined, 4]]);
  });

  it('an error of send() is the client\'s own, in the subscriber\'s context; unsubscribing cancels the call', async () => {
    const client = new OneConnectionClient();
    const failure = new Error('no quote');
    const errors: Array<[string | undefined, unknown]> = [];
    where.run('alice', () => client.send('price', {}).subscribe({ error: (error: unknown) => errors.push([where.getStore(), error]) }));
    const subscription = where.run('bob', () => client.send('price', {}).subscribe());
    await new Promise((resolve) => setTimeout(resolve, 5));
    client.replies[0]!({ err: failure, response: undefined, isDisposed: true });
    expect(errors).toEqual([['alice', failure]]);
    expect(client.cancelled, 'teardown of a failed call').toBe(1);
    subscription.unsubscribe();
    expect(client.cancelled, 'unsubscribing did not reach the client\'s teardown').toBe(2);
  });

  it('emit() is sent without a subscriber, and its completion reaches a subscriber in its own context', async () => {
    const client = new OneConnectionClient();
    const seen: Array<[string | undefined, string]> = [];
    // Emitted by one piece of code, subscribed to by another.
    const sent = where.run('emitter', () => client.emit('order.created', { id: 1 }));
    where.run('bob', () => client.emit('order.created', { id: 2 }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(client.events.map((event) => event.packet.data), 'emit() no longer sends at once').toEqual([{ id: 1 }, { id: 2 }]);
    where.run('alice', () => sent.subscribe({ next: () => seen.push([where.getStore(), 'next']), complete: () => seen.push([where.getStore(), 'complete']) }));
    client.events[0]!.done('ok');
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(seen).toEqual([
      ['alice', 'next'],
      ['alice', 'complete'],
    ]);
  });
});

describe('NestJS ClientGrpcProxy createServiceMethod (lib/integrations/nest-client-proxy-context.ts)', () => {
  /** Where each piece of code runs: the subscriber's context, or the channel's. */
  const where = new AsyncLocalStorage<string>();
  const PROTO = fileURLToPath(new URL('../app/grpc-orders.proto', import.meta.url));

  type Callback = (error: unknown, reply?: unknown) => void;
  /**
   * A @grpc/grpc-js service client whose calls answer in the context its connection was
   * opened in, as a channel does with the calls made while it connects.
   */
  function connectingClient() {
    const deliver = where.run('connection', () => AsyncLocalStorage.bind((fn: () => void) => fn()));
    const unary: Callback[] = [];
    const streams: EventEmitter[] = [];
    const state = { cancelled: 0 };
    const Quote = Object.assign(
      (...args: unknown[]) => {
        const callback = args.at(-1) as Callback;
        unary.push((error, reply) => deliver(() => callback(error, reply)));
        return { finished: false, cancel: () => state.cancelled++ };
      },
      { requestStream: false, responseStream: false },
    );
    const NoteOrders = Object.assign(
      () => {
        const call = Object.assign(new EventEmitter(), { finished: false, cancel: () => state.cancelled++, destroy: () => undefined });
        streams.push(call);
        return call;
      },
      { requestStream: false, responseStream: true },
    );
    return { client: { Quote, NoteOrders }, unary, streams, deliver, state };
  }

  let proxy: ClientGrpcProxy;
  beforeAll(async () => {
    expect(await deliverClientRepliesInSubscriberContext(), '@nestjs/microservices is installed').toBe(true);
    // Nothing listens on port 1: a call fails once the channel's connection does.
    proxy = new ClientGrpcProxy({ package: 'audit_test.orders', protoPath: PROTO, url: '127.0.0.1:1' });
  });
  afterAll(() => proxy.close());

  it('ClientGrpcProxy.prototype.createServiceMethod exists, is the one patched (once), and getService() makes every method with it', async () => {
    expect(await loadClientGrpcProxy(), 'the class loaded').toBe(ClientGrpcProxy);
    const { createServiceMethod } = ClientGrpcProxy.prototype;
    expect(typeof createServiceMethod, 'ClientGrpcProxy.prototype.createServiceMethod').toBe('function');
    await deliverClientRepliesInSubscriberContext();
    expect(ClientGrpcProxy.prototype.createServiceMethod, 'patched a second time').toBe(createServiceMethod);
    const made: string[] = [];
    ClientGrpcProxy.prototype.createServiceMethod = function (this: ClientGrpcProxy, client: unknown, methodName: string) {
      made.push(methodName);
      return createServiceMethod.call(this, client, methodName);
    };
    try {
      const service = proxy.getService<Record<string, unknown>>('OrdersService');
      expect(made.sort(), 'getService() no longer makes its methods with ClientGrpcProxy.prototype.createServiceMethod').toEqual(
        ['CancelOrders', 'NoteOrders', 'PayOrder', 'Quote', 'UpdateOrder', 'UpdateOrders', 'cancelOrders', 'noteOrders', 'payOrder', 'quote', 'updateOrder', 'updateOrders'].sort(),
      );
      expect(Object.keys(service).sort()).toEqual(made);
    } finally {
      ClientGrpcProxy.prototype.createServiceMethod = createServiceMethod;
    }
  });

  it('a unary reply reaches the operators after it in the subscriber\'s context, the value unchanged, at once; an error too; unsubscribing cancels', async () => {
    const { client, unary, state } = connectingClient();
    const quote = proxy.createServiceMethod(client, 'Quote');
    const seen: Array<[string | undefined, unknown]> = [];
    const subscribe = (who: string) =>
      where.run(who, () =>
        quote({ delay: 0 })
          .pipe(map((value) => [where.getStore(), value] as [string | undefined, unknown]))
          .subscribe({ next: (entry) => seen.push(entry), error: (error: unknown) => seen.push([where.getStore(), error]), complete: () => seen.push([where.getStore(), 'complete']) }),
      );
    subscribe('alice');
    subscribe('bob');
    const carol = where.run('carol', () => quote({ delay: 0 }).subscribe());
    expect(unary, 'the call did not start at subscription').toHaveLength(3);
    unary[1]!(null, { price: 2 });
    expect(seen, 'the reply was not delivered synchronously').toEqual([
      ['bob', { price: 2 }],
      ['bob', 'complete'],
    ]);
    const failure = Object.assign(new Error('unavailable'), { code: 14, details: 'unavailable' });
    unary[0]!(failure);
    expect(seen.slice(2)).toEqual([['alice', expect.objectContaining({ code: 14, details: 'unavailable' })]]);
    carol.unsubscribe();
    expect(state.cancelled, 'unsubscribing did not reach the call\'s cancel').toBe(3);
  });

  it('a server stream\'s replies and its end reach the subscriber in its own context', () => {
    const { client, streams, deliver } = connectingClient();
    const noteOrders = proxy.createServiceMethod(client, 'NoteOrders');
    const seen: Array<[string | undefined, unknown]> = [];
    where.run('alice', () =>
      noteOrders({ ids: [1, 2], note: 'n' }).subscribe({ next: (value) => seen.push([where.getStore(), value]), complete: () => seen.push([where.getStore(), 'complete']) }),
    );
    expect(streams).toHaveLength(1);
    deliver(() => streams[0]!.emit('data', { id: 1 }));
    deliver(() => streams[0]!.emit('data', { id: 2 }));
    deliver(() => streams[0]!.emit('end'));
    expect(seen).toEqual([
      ['alice', { id: 1 }],
      ['alice', { id: 2 }],
      ['alice', 'complete'],
    ]);
  });

  it('calls made through getService() while the channel connects each fail in their own subscriber\'s context', async () => {
    const service = proxy.getService<{ quote(request: { delay: number }): Observable<unknown> }>('OrdersService');
    const failed = (who: string) =>
      new Promise<[string | undefined, unknown]>((resolve) =>
        where.run(who, () => service.quote({ delay: 0 }).subscribe({ next: () => resolve([where.getStore(), 'reply']), error: (error: unknown) => resolve([where.getStore(), error]) })),
      );
    const answers = await Promise.all([failed('alice'), failed('bob'), failed('carol')]);
    expect(answers).toEqual(['alice', 'bob', 'carol'].map((who) => [who, expect.objectContaining({ code: 14 })]));
  });
});

describe('NestJS ClientGrpcProxy getClientByServiceName (lib/integrations/nest-client-proxy-context.ts)', () => {
  /** Where each piece of code runs: the caller's context, or the channel's. */
  const where = new AsyncLocalStorage<string>();
  const PROTO = fileURLToPath(new URL('../app/grpc-orders.proto', import.meta.url));
  const METHODS = ['CancelOrders', 'NoteOrders', 'PayOrder', 'Quote', 'UpdateOrder', 'UpdateOrders'];

  type Call = { on(event: string, listener: (...args: never[]) => void): Call; cancel(): void; emit: unknown };
  type ServiceMethod = ((...args: unknown[]) => Call) & { path?: string; requestStream?: boolean; responseStream?: boolean };
  type RawClient = grpc.Client & Record<string, ServiceMethod>;

  let proxy: ClientGrpcProxy;
  beforeAll(async () => {
    expect(await deliverClientRepliesInSubscriberContext(), '@nestjs/microservices is installed').toBe(true);
  });
  beforeEach(() => {
    // A fresh channel to a port nothing listens on: its calls fail once its connection does.
    proxy = new ClientGrpcProxy({ package: 'audit_test.orders', protoPath: PROTO, url: '127.0.0.1:1' });
  });
  afterEach(() => proxy.close());

  it('ClientGrpcProxy.prototype.getClientByServiceName exists, is the one patched (once), and gives the service\'s one @grpc/grpc-js client, whose class lists its methods in `service`', async () => {
    expect(await loadClientGrpcProxy(), 'the class loaded').toBe(ClientGrpcProxy);
    const { getClientByServiceName } = ClientGrpcProxy.prototype;
    expect(typeof getClientByServiceName, 'ClientGrpcProxy.prototype.getClientByServiceName').toBe('function');
    await deliverClientRepliesInSubscriberContext();
    expect(ClientGrpcProxy.prototype.getClientByServiceName, 'patched a second time').toBe(getClientByServiceName);

    const client = proxy.getClientByServiceName<RawClient>('OrdersService');
    expect(client, 'not a @grpc/grpc-js client').toBeInstanceOf(grpc.Client);
    expect(proxy.getClientByServiceName('OrdersService'), 'another client for the same service').toBe(client);
    const service = (client.constructor as grpc.ServiceClientConstructor).service;
    expect(Object.entries(service).map(([name, definition]) => [name, definition.originalName]).sort(), 'the client\'s class no longer lists its methods in `service`').toEqual(
      METHODS.map((name) => [name, name[0]!.toLowerCase() + name.slice(1)]),
    );
    const prototype = (client.constructor as grpc.ServiceClientConstructor).prototype as Record<string, ServiceMethod>;
    for (const [name, definition] of Object.entries(service)) {
      const method = client[name]!;
      expect(method, `${name} is not wrapped`).not.toBe(prototype[name]);
      expect(client[definition.originalName!], `${definition.originalName} is not ${name}`).toBe(method);
      expect({ path: method.path, requestStream: method.requestStream, responseStream: method.responseStream }, `${name}'s attributes`).toEqual({
        path: definition.path,
        requestStream: definition.requestStream,
        responseStream: definition.responseStream,
      });
    }
    expect(Object.keys(client), 'the client\'s own enumerable keys changed').toEqual([]);
  });

  it('the wrapped client still shows its service methods as grpc-js made them: inherited and enumerable (for…in lists them), none of its own', () => {
    const client = proxy.getClientByServiceName<RawClient>('OrdersService');
    const listed: string[] = [];
    for (const key in client) listed.push(key);
    const names = METHODS.flatMap((name) => [name, name[0]!.toLowerCase() + name.slice(1)]);
    expect(listed.filter((key) => names.includes(key)).sort(), 'for…in no longer lists the service methods').toEqual([...names].sort());
    expect(names.filter((name) => Object.prototype.hasOwnProperty.call(client, name)), 'own service methods').toEqual([]);
    expect(client).toBeInstanceOf(client.constructor);
  });

  it('a client made before the patch (kept by Nest in the proxy\'s `clients`, under its service\'s name) is wrapped from the proxies given, once; other values are left alone', async () => {
    // What getClientByServiceName made before it was patched: Nest's createClientByServiceName.
    const early = proxy.createClientByServiceName('OrdersService') as RawClient;
    const prototype = Object.getPrototypeOf(early) as Record<string, ServiceMethod>;
    expect(early.Quote, 'wrapped already').toBe(prototype.Quote);
    expect((proxy as unknown as { clients: unknown }).clients, 'ClientGrpcProxy no longer keeps its clients in `clients`').toEqual(new Map([['OrdersService', early]]));
    // A provider that throws whenever it is looked at (as nestjs-cls's proxy providers may outside a CLS context).
    const throwing = new Proxy({}, { getPrototypeOf: () => { throw new Error('outside a context'); }, get: () => { throw new Error('outside a context'); } });
    await answerCallsOfGrpcClientsMadeBefore([undefined, null, {}, throwing, early, proxy]);
    const wrapped = early.Quote;
    expect(wrapped, 'not wrapped').not.toBe(prototype.Quote);
    expect(early.quote).toBe(wrapped);
    await answerCallsOfGrpcClientsMadeBefore([proxy]);
    expect(proxy.getClientByServiceName('OrdersService'), 'another client').toBe(early);
    expect(early.Quote, 'wrapped twice').toBe(wrapped);
    const called = await new Promise<unknown>((resolve) => where.run('alice', () => early.Quote!({ delay: 0 }, () => resolve(where.getStore()))));
    expect(called).toBe('alice');
  });

  it('a callback followed by more arguments, which grpc-js takes as the call\'s callback (the first function), runs in its caller\'s context too', async () => {
    const client = proxy.getClientByServiceName<RawClient>('OrdersService');
    const unary = (who: string, ...args: unknown[]) =>
      new Promise<unknown[]>((resolve) =>
        where.run(who, () => client.Quote!({ delay: 0 }, ...args.map((arg) => (arg === 'callback' ? (error: grpc.ServiceError | null) => resolve([who, where.getStore(), error?.code]) : arg)))),
      );
    const unavailable = grpc.status.UNAVAILABLE;
    expect(await Promise.all([unary('alice', 'callback'), unary('bob', 'callback', undefined), unary('carol', new grpc.Metadata(), 'callback', undefined)])).toEqual([
      ['alice', 'alice', unavailable],
      ['bob', 'bob', unavailable],
      ['carol', 'carol', unavailable],
    ]);
  });

  it('calls made while the channel connects get their callback and their call object\'s events in their caller\'s context, in each argument form; cancelling still works', async () => {
    const client = proxy.getClientByServiceName<RawClient>('OrdersService');
    /** A unary call's callback and 'status' event: where each ran, and the code it got. */
    const unary = (who: string, ...args: unknown[]) =>
      new Promise<unknown[]>((resolve) => {
        const seen: unknown[] = [];
        const call = where.run(who, () =>
          client.Quote!({ delay: 0 }, ...args, (error: grpc.ServiceError | null) => seen.push(['callback', where.getStore(), error?.code])).on('status', (status: grpc.StatusObject) => {
            seen.push(['status', where.getStore(), status.code]);
            resolve(seen);
          }),
        );
        if (who === 'dave') call.cancel();
      });
    /** A server stream's 'error' and 'status' events (its lower-camel alias). */
    const stream = (who: string) =>
      new Promise<unknown[]>((resolve) => {
        const seen: unknown[] = [];
        where.run(who, () =>
          client
            .noteOrders!({ ids: [1], note: 'n' }, new grpc.Metadata())
            .on('error', (error: grpc.ServiceError) => seen.push(['error', where.getStore(), error.code]))
            .on('status', (status: grpc.StatusObject) => {
              seen.push(['status', where.getStore(), status.code]);
              resolve(seen);
            }),
        );
      });
    const outcomes = await Promise.all([
      unary('alice'),
      unary('bob', new grpc.Metadata()),
      unary('carol', new grpc.Metadata(), { deadline: Date.now() + 10_000 }),
      unary('dave'),
      stream('erin'),
    ]);
    const unavailable = grpc.status.UNAVAILABLE;
    expect(outcomes).toEqual([
      [['callback', 'alice', unavailable], ['status', 'alice', unavailable]],
      [['callback', 'bob', unavailable], ['status', 'bob', unavailable]],
      [['callback', 'carol', unavailable], ['status', 'carol', unavailable]],
      [['callback', 'dave', grpc.status.CANCELLED], ['status', 'dave', grpc.status.CANCELLED]],
      [['error', 'erin', unavailable], ['status', 'erin', unavailable]],
    ]);
  });
});

@Injectable()
class AppGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

class LateGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

describe('NestJS global guards (lib/integrations/nest-global-guards.ts)', () => {
  it('ApplicationConfig.getGlobalGuards(), reached through ModuleRef, is the live list, and the audit guard is first in it', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [...AuditEntities], synchronize: true }),
        AuditModule.forRoot(),
      ],
      providers: [{ provide: APP_GUARD, useClass: AppGuard }],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      app.useGlobalGuards(new LateGuard());
      await app.init();
      const guards = globalGuards(app.get(ModuleRef));
      expect(Array.isArray(guards), 'moduleRef.container.applicationConfig.getGlobalGuards() is not an array').toBe(true);
      expect(globalGuards(app.get(ModuleRef)), 'getGlobalGuards() returns a copy, not the list Nest reads').toBe(guards);
      expect(
        guards!.map((guard) => guard.constructor.name),
        'the audit guard is not the first global guard',
      ).toEqual([AuditContextGuard.name, AppGuard.name, LateGuard.name]);
      expect(guards![0], 'the first global guard is not the module\'s own instance').toBe(app.get(AuditContextGuard));

      // Put first even behind guards already there, and only once.
      const late = new LateGuard();
      putGlobalGuardFirst(app.get(ModuleRef), late);
      putGlobalGuardFirst(app.get(ModuleRef), late);
      expect(guards!.indexOf(late), 'putGlobalGuardFirst() did not put the guard first').toBe(0);
      expect(guards!.filter((guard) => guard === late), 'putGlobalGuardFirst() added the guard twice').toHaveLength(1);
    } finally {
      await app.close();
    }
  });
});

@Injectable()
class AppInterceptor implements NestInterceptor {
  intercept(_: unknown, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

class LateInterceptor implements NestInterceptor {
  intercept(_: unknown, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

describe('NestJS global interceptors (lib/integrations/nest-global-interceptors.ts)', () => {
  it('ApplicationConfig.getGlobalInterceptors(), reached through ModuleRef, is the list Nest reads, and the reply interceptor is first in it', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [...AuditEntities], synchronize: true }),
        AuditModule.forRoot(),
      ],
      providers: [{ provide: APP_INTERCEPTOR, useClass: AppInterceptor }],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      app.useGlobalInterceptors(new LateInterceptor());
      await app.init();
      const interceptors = globalInterceptors(app.get(ModuleRef));
      expect(Array.isArray(interceptors), 'moduleRef.container.applicationConfig.getGlobalInterceptors() is not an array').toBe(true);
      expect(globalInterceptors(app.get(ModuleRef)), 'getGlobalInterceptors() returns a copy, not the list Nest reads').toBe(interceptors);
      const names = interceptors!.map((interceptor) => interceptor.constructor.name);
      expect(names[0], 'the reply interceptor is not the first global interceptor').toBe(AuditReplyInterceptor.name);
      expect(names.slice(1).sort(), 'the other global interceptors').toEqual(['AuditInterceptor', AppInterceptor.name, LateInterceptor.name].sort());
      expect(interceptors![0], "the first global interceptor is not the module's own instance").toBe(app.get(AuditReplyInterceptor));

      // Put first even behind interceptors already there, and only once.
      const late = new LateInterceptor();
      putGlobalInterceptorFirst(app.get(ModuleRef), late);
      putGlobalInterceptorFirst(app.get(ModuleRef), late);
      expect(interceptors!.indexOf(late), 'putGlobalInterceptorFirst() did not put the interceptor first').toBe(0);
      expect(interceptors!.filter((interceptor) => interceptor === late), 'putGlobalInterceptorFirst() added the interceptor twice').toHaveLength(1);
    } finally {
      await app.close();
    }
  });
});

@Entity('integration_commit_item')
class CommitItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar' })
  code!: string;
}

describe.runIf(databases().includes('postgres'))('TypeORM PostgresQueryRunner.query and commitTransaction (lib/integrations/typeorm-commit-statements.ts)', () => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const sent: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    dataSource = await new DataSource({
      ...(db.options as DataSourceOptions),
      entities: [CommitItem],
      synchronize: true,
      logging: true,
      logger: { logQuery: (query: string) => void sent.push(query), logQueryError() {}, logQuerySlow() {}, logSchemaBuild() {}, logMigration() {}, log() {} },
    } as DataSourceOptions).initialize();
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  const table = (): string => `"${(db.options as { schema: string }).schema}"."integration_commit_item"`;
  const codes = async (): Promise<string[]> => (await dataSource.getRepository(CommitItem).find({ order: { id: 'ASC' } })).map((item) => item.code);

  it('commits with the statements handed to it, in the COMMIT message itself', async () => {
    expect(attachCommitStatements(dataSource), 'PostgresQueryRunner.commitTransaction no longer sends this.query("COMMIT") after BeforeTransactionCommit').toBe(true);
    const runner = dataSource.createQueryRunner();
    await runner.startTransaction();
    expect(commitCarriesStatements(runner)).toBe(true);
    await runner.manager.getRepository(CommitItem).insert({ code: 'change' });
    sendWithCommit(runner, `INSERT INTO ${table()} (code) VALUES ('riding')`);
    sent.length = 0;
    await runner.commitTransaction();
    await runner.release();
    expect(sent, 'the INSERT and the COMMIT went as one query').toEqual([`INSERT INTO ${table()} (code) VALUES ('riding');\nCOMMIT`]);
    expect(await codes()).toEqual(['change', 'riding']);
    expect(takeUnsent(runner)).toBeUndefined();
  });

  it('commits nothing when a statement riding on the COMMIT fails', async () => {
    const before = await codes();
    const runner = dataSource.createQueryRunner();
    await runner.startTransaction();
    await runner.manager.getRepository(CommitItem).insert({ code: 'lost' });
    sendWithCommit(runner, `INSERT INTO ${table()} (no_such_column) VALUES ('x')`);
    await expect(runner.commitTransaction()).rejects.toThrow(/no_such_column/);
    await runner.rollbackTransaction();
    await runner.release();
    expect(await codes(), 'the transaction committed although its journal INSERT failed').toEqual(before);
  });

  it('writes literals that read back as the same text, whatever standard_conforming_strings is', async () => {
    const texts = ["it's", 'back\\slash', "both \\' mixed", 'line\nbreak', '{"json": "with \\"quotes\\""}', 'émoji 😀', ''];
    for (const setting of ['on', 'off']) {
      const runner = dataSource.createQueryRunner();
      try {
        await runner.query(`SET standard_conforming_strings = ${setting}`);
        for (const text of texts) {
          const [row] = (await runner.query(`SELECT ${postgresLiteral(text)} AS text`)) as Array<{ text: string }>;
          expect(row!.text, `${JSON.stringify(text)} with standard_conforming_strings ${setting}`).toBe(text);
        }
      } finally {
        await runner.query('RESET standard_conforming_strings');
        await runner.release();
      }
    }
  });
});

describe('Driver reads of the audit tables as UTC (lib/integrations/driver-utc-date-reads.ts)', () => {
  /** A data source of `kind` with no entity: what the patch needs of TypeORM and the driver, and what the driver honours. */
  async function withDataSource(kind: 'postgres' | 'mariadb', fn: (dataSource: DataSource) => Promise<void>): Promise<void> {
    const db = await createTestDatabase(kind);
    const dataSource = await new DataSource({ ...(db.options as DataSourceOptions), entities: [] } as DataSourceOptions).initialize();
    try {
      await fn(dataSource);
    } finally {
      await dataSource.destroy();
      await db.drop();
    }
  }

  it.runIf(databases().includes('postgres'))('PostgreSQL: the pool emits "acquire" with the client TypeORM queries through, and node-postgres honours a per-query types', async () => {
    await withDataSource('postgres', async (dataSource) => {
      const pool = (dataSource.driver as unknown as { master: { on(event: string, listener: (client: unknown) => void): void } }).master;
      expect(typeof pool.on, 'PostgresDriver.master is no longer an EventEmitter pool').toBe('function');
      const acquired: unknown[] = [];
      pool.on('acquire', (client) => void acquired.push(client));
      const runner = dataSource.createQueryRunner();
      try {
        await runner.connect();
        const client = (runner as unknown as { databaseConnection: { query: unknown; getTypeParser: unknown } }).databaseConnection;
        expect(acquired, 'the query runner\'s connection is not the client the pool emitted on "acquire"').toContain(client);
        expect(typeof client.getTypeParser).toBe('function');
        const asked: number[] = [];
        const types = { getTypeParser: (oid: number) => (oid === 1114 ? (text: string) => `parsed ${text}` : (text: string) => (asked.push(oid), text)) };
        const result = (await (client.query as (config: unknown) => Promise<{ rows: Array<{ at: unknown }> }>)({ text: "SELECT '2026-03-29 02:30:00.123'::timestamp AS at", types }));
        expect(result.rows[0]!.at, 'node-postgres no longer reads a per-query types').toBe('parsed 2026-03-29 02:30:00.123');
      } finally {
        await runner.release();
      }
    });
  });

  it.runIf(databases().includes('mariadb'))('MySQL/MariaDB: TypeORM prepares each connection through driver.prepareDbConnection, and mysql2 honours a per-query timezone', async () => {
    await withDataSource('mariadb', async (dataSource) => {
      const driver = dataSource.driver as unknown as { prepareDbConnection?: (connection: unknown) => unknown };
      expect(typeof driver.prepareDbConnection, 'MysqlDriver.prepareDbConnection is gone').toBe('function');
      const prepared: unknown[] = [];
      const original = driver.prepareDbConnection!;
      driver.prepareDbConnection = function (this: unknown, connection: unknown) {
        prepared.push(connection);
        return original.call(this, connection);
      };
      const runner = dataSource.createQueryRunner();
      try {
        await runner.connect();
        const connection = (runner as unknown as { databaseConnection: { query(options: unknown, callback: (error: unknown, rows: Array<{ at: Date }>) => void): void } }).databaseConnection;
        expect(prepared, 'the query runner\'s connection did not go through prepareDbConnection').toContain(connection);
        const rows = await new Promise<Array<{ at: Date }>>((resolve, reject) =>
          connection.query({ sql: "SELECT CAST('2026-03-29 02:30:00.123' AS DATETIME(3)) AS at", timezone: 'Z' }, (error, result) => (error ? reject(error) : resolve(result))),
        );
        expect(rows[0]!.at.toISOString(), 'mysql2 no longer reads a per-query timezone').toBe('2026-03-29T02:30:00.123Z');
      } finally {
        await runner.release();
      }
    });
  });
});

describe.each(databases())('TypeORM query runners: query() and the work afterQuery returns (lib/integrations/typeorm-after-query-wait.ts), on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  /** What the probe subscriber does with the next UPDATE's afterQuery: the work it returns, and whether it hands it to waitForCapture. */
  let next: { work: (event: AfterQueryEvent) => Promise<unknown>; handOver: boolean } | undefined;
  const probe: EntitySubscriberInterface = {
    afterQuery(event: AfterQueryEvent): Promise<unknown> | void {
      if (!next || !event.query.startsWith('UPDATE')) return;
      const { work, handOver } = next;
      next = undefined;
      return handOver ? waitForCapture(event, () => work(event)) : work(event);
    },
  };
  /** The probe's table, in the test's own schema on PostgreSQL. */
  let table = 'integration_after_query';
  const later = <T>(value: () => T, ms = 50): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value()), ms));

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await new DataSource({ ...(db.options as DataSourceOptions), entities: [] } as DataSourceOptions).initialize();
    (dataSource.subscribers as EntitySubscriberInterface[]).push(probe);
    if (kind === 'postgres') table = `"${(db.options as { schema: string }).schema}".${table}`;
    await dataSource.query(`CREATE TABLE ${table} (v integer)`);
    await dataSource.query(`INSERT INTO ${table} (v) VALUES (0)`);
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('query() is patched exactly where TypeORM resolves it before the work afterQuery returned is done', async () => {
    // TypeORM's own behaviour, with work not handed to the patch: the patch does not wait for it.
    let done = false;
    next = { work: () => later(() => (done = true)), handOver: false };
    await dataSource.query(`UPDATE ${table} SET v = v + 1`);
    const typeormWaits = done;
    await later(() => undefined, 100);
    // On PostgreSQL the commit-statements patch wraps query() too (the module installs it
    // after this one): whether TypeORM waits is read from the method under that wrapper.
    attachCommitStatements(dataSource);
    const patched = attachAfterQueryWait(dataSource);
    expect(
      patched,
      typeormWaits
        ? "this TypeORM's query() waits for afterQuery work by itself, but its source does not read as such: the patch was installed"
        : "this TypeORM's query() resolves before afterQuery work is done, but its source reads as waiting for it: the patch was not installed",
    ).toBe(!typeormWaits);
    const runner = dataSource.createQueryRunner();
    expect(queriesWaitForCapture(runner)).toBe(patched);
    await runner.release();
    // Where each TypeORM line is known to stand: 1 waits on every driver; 0.3 does not on
    // MySQL/MariaDB (it resolves from the driver's callback) nor on better-sqlite3 (it never
    // awaits the broadcast). TypeORM 1's drivers name their data source `dataSource`, 0.3's `connection`.
    const version = 'dataSource' in dataSource.driver ? '1' : '0.3';
    expect(typeormWaits, `whether query() waits for afterQuery work on TypeORM ${version}, ${kind}`).toBe(version === '1' || kind === 'postgres');
  });

  it('a query settles only once the work handed to it is done: resolved with its result, rejected with the work\'s error', async () => {
    attachAfterQueryWait(dataSource);
    let done = false;
    next = { work: () => later(() => (done = true)), handOver: true };
    const runner = dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await runner.query(`UPDATE ${table} SET v = v + 1`);
      expect(done, 'query() resolved before the afterQuery work handed to it was done').toBe(true);
      await runner.commitTransaction();

      next = { work: () => later(() => Promise.reject(new Error('capture failed'))), handOver: true };
      await expect(runner.query(`UPDATE ${table} SET v = v + 1`), 'query() did not reject with the failed work\'s error').rejects.toThrow('capture failed');
    } finally {
      await runner.release();
    }
  });

  it('a statement the work runs on the same query runner does not wait for that work', async () => {
    attachAfterQueryWait(dataSource);
    let read: unknown;
    next = {
      work: async (event) => {
        await later(() => undefined, 10);
        read = await event.queryRunner.query(`SELECT v FROM ${table}`);
      },
      handOver: true,
    };
    const runner = dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await runner.query(`UPDATE ${table} SET v = v + 1`);
      expect(read, 'the work\'s own statement did not run before query() resolved').toEqual([{ v: expect.any(Number) }]);
      await runner.commitTransaction();
    } finally {
      await runner.release();
    }
  }, 10_000);

  it('a statement the work sends on the same query runner before its first await does not wait for that work', async () => {
    // A fallback event stored on the connection the app still holds: the writer's first
    // statement goes out synchronously, inside afterQuery, before it returns the work.
    attachAfterQueryWait(dataSource);
    let read: unknown;
    next = { work: async (event) => void (read = await event.queryRunner.query(`SELECT v FROM ${table}`)), handOver: true };
    const runner = dataSource.createQueryRunner();
    try {
      const settled = runner.query(`UPDATE ${table} SET v = v + 1`).then(() => 'settled');
      expect(await Promise.race([settled, later(() => 'still waiting', 3_000)]), 'query() waited for the work, which waited for its own statement').toBe('settled');
      expect(read, 'the work\'s own statement did not run before query() resolved').toEqual([{ v: expect.any(Number) }]);
    } finally {
      await runner.release();
    }
  }, 10_000);

  it('a query fails when the work handed to it fails at once (before its first await)', async () => {
    attachAfterQueryWait(dataSource);
    const runner = dataSource.createQueryRunner();
    try {
      next = { work: () => Promise.reject(new Error('capture failed at once')), handOver: true };
      await expect(runner.query(`UPDATE ${table} SET v = v + 1`), "query() did not reject with the failed work's error").rejects.toThrow('capture failed at once');
      next = {
        work: () => {
          throw new Error('capture threw');
        },
        handOver: true,
      };
      await expect(runner.query(`UPDATE ${table} SET v = v + 1`), "query() did not reject with the work's error").rejects.toThrow('capture threw');
    } finally {
      next = undefined;
      await runner.release();
    }
  });

  it("a query fails with its own work's failure only, not with that of another query's work it waited for", async () => {
    // As where TypeORM waits by itself: a read sent at once with a write whose capture fails succeeds.
    attachAfterQueryWait(dataSource);
    const failing = (): Promise<unknown> => later(() => Promise.reject(new Error('capture failed')));
    next = { work: failing, handOver: true };
    const runner = dataSource.createQueryRunner();
    try {
      const [write, read] = await Promise.allSettled([runner.query(`UPDATE ${table} SET v = v + 1`), runner.query(`SELECT v FROM ${table}`)]);
      expect(write.status === 'rejected' ? String(write.reason) : write.status).toBe('Error: capture failed');
      expect(read.status === 'rejected' ? String(read.reason) : read.status, 'a read failed with the failed capture of another write').toBe('fulfilled');
      // The same text twice: the first one's work fails, the second one's does not.
      next = {
        work: () => {
          next = { work: () => later(() => undefined), handOver: true };
          return failing();
        },
        handOver: true,
      };
      const [first, second] = await Promise.allSettled([runner.query(`UPDATE ${table} SET v = v + 1`), runner.query(`UPDATE ${table} SET v = v + 1`)]);
      expect([first.status, second.status === 'rejected' ? String(second.reason) : second.status]).toEqual(['rejected', 'fulfilled']);
    } finally {
      next = undefined;
      await runner.release();
    }
  });

  it('a statement one work sends does not wait for the work of another write sent at once on the same query runner', async () => {
    // Two raw writes at once on one runner, the app's first fallback events: the first one's
    // capture reads the packet size on the runner, the second one's awaits that same read.
    attachAfterQueryWait(dataSource);
    let shared: Promise<unknown> | undefined;
    const work = (event: AfterQueryEvent): Promise<unknown> => (shared ??= event.queryRunner.query(`SELECT v FROM ${table}`));
    next = {
      work: (event) => {
        next = { work, handOver: true };
        return work(event);
      },
      handOver: true,
    };
    const runner = dataSource.createQueryRunner();
    try {
      const settled = Promise.all([runner.query(`UPDATE ${table} SET v = v + 1`), runner.query(`UPDATE ${table} SET v = v + 1`)]).then(() => 'settled');
      expect(await Promise.race([settled, later(() => 'still waiting', 3_000)]), "the first work's statement waited for the second work, which waited for it").toBe('settled');
    } finally {
      next = undefined;
      await runner.release();
    }
  }, 10_000);
});

describe('@grpc/grpc-js call handlers (lib/integrations/grpc-js-method-kind.ts)', () => {
  const PROTO = fileURLToPath(new URL('../app/grpc-orders.proto', import.meta.url));

  /** The kind each handler's call says, through `interceptors` server interceptors; the server and a client. */
  async function served(interceptors: grpc.ServerInterceptor[]) {
    const definition = grpc.loadPackageDefinition(await protoLoader.load(PROTO)) as unknown as {
      audit_test: { orders: { OrdersService: grpc.ServiceClientConstructor } };
    };
    const Service = definition.audit_test.orders.OrdersService;
    const kinds: Record<string, unknown> = {};
    const server = new grpc.Server({ interceptors });
    server.addService(Service.service, {
      UpdateOrder: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        kinds['UpdateOrder'] = grpcMethodKind(call);
        callback(null, { id: 1 });
      },
      NoteOrders: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        kinds['NoteOrders'] = grpcMethodKind(call);
        call.end();
      },
      CancelOrders: (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        kinds['CancelOrders'] = grpcMethodKind(call);
        call.on('data', () => undefined);
        call.on('end', () => callback(null, { cancelled: 0 }));
      },
      UpdateOrders: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        kinds['UpdateOrders'] = grpcMethodKind(call);
        call.on('data', () => undefined);
        call.on('end', () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => grpc.ClientWritableStream<unknown> & grpc.ClientReadableStream<unknown>>;
    return { server, client, kinds };
  }

  async function callEach(client: Awaited<ReturnType<typeof served>>['client']): Promise<void> {
    await new Promise((resolve, reject) => client['UpdateOrder']!({ id: 1, status: 'x' }, (error: unknown) => (error ? reject(error) : resolve(undefined))));
    await new Promise((resolve, reject) => {
      const call = client['NoteOrders']!({ ids: [1], note: 'x' });
      call.on('data', () => undefined).on('error', reject).on('end', resolve);
    });
    await new Promise((resolve, reject) => {
      const call = client['CancelOrders']!((error: unknown) => (error ? reject(error) : resolve(undefined)));
      call.end();
    });
    await new Promise((resolve, reject) => {
      const call = client['UpdateOrders']!();
      call.on('data', () => undefined).on('error', reject).on('end', resolve);
      call.end();
    });
  }

  const passThrough: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call);

  it.each([
    ['no server interceptor', []],
    ['two server interceptors', [passThrough, passThrough]],
  ] as const)('each handler\'s call says its method\'s kind (%s)', async (_name, interceptors) => {
    const { server, client, kinds } = await served([...interceptors]);
    try {
      await callEach(client);
    } finally {
      (client as unknown as grpc.Client).close();
      server.forceShutdown();
    }
    expect(kinds, 'the call object no longer holds its method handler where the module reads it (call.call[.nextCall…].handler.type)').toEqual({
      UpdateOrder: 'unary',
      NoteOrders: 'serverStream',
      CancelOrders: 'clientStream',
      UpdateOrders: 'bidi',
    });
  });

  it('anything else is of no known kind', () => {
    for (const call of [undefined, null, {}, { call: {} }, { call: { handler: { type: 'other' } } }, { call: { nextCall: { nextCall: null } } }]) {
      expect(grpcMethodKind(call)).toBeUndefined();
    }
  });
});
