import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type {
  AfterQueryEvent,
  EntityMetadata,
  BeforeQueryEvent,
  DataSource,
  EntitySubscriberInterface,
  InsertEvent,
  ObjectLiteral,
  RecoverEvent,
  RemoveEvent,
  SoftRemoveEvent,
  TransactionCommitEvent,
  TransactionRollbackEvent,
  QueryRunner,
  TransactionStartEvent,
  UpdateEvent,
} from 'typeorm';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditContext } from '../context/audit-context.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { AuditDataSources } from './audit-data-sources.js';
import { ChangeCapture } from './change-capture.js';
import { entityId, idFromKeyValues } from './entity-identity.js';
import { dropSecretKeys, useSecretKeys } from './secret-keys.js';
import { DeleteCascade, deleteEffectsOf, RemovedRows, type DeleteEffects, type PendingChange } from './delete-cascade.js';
import { diffSnapshots, selectHidden, snapshotFields, type Snapshot, type TrackedFields } from './entity-snapshot.js';
import { attachPersistenceScope } from '../integrations/typeorm-persistence-scope.js';
import { attachEntityEventHooks } from '../integrations/typeorm-entity-event-hooks.js';
import { attachTransactionScope } from '../integrations/typeorm-transaction-scope.js';
import { attachCommitStatements } from '../integrations/typeorm-commit-statements.js';
import { attachAfterQueryWait, waitForCapture } from '../integrations/typeorm-after-query-wait.js';
import { attachRawWriteTransaction, detachRawWriteTransaction } from '../integrations/typeorm-raw-write-transaction.js';
import { attachCommitPoints, detachCommitPoints } from '../integrations/typeorm-commit-points.js';
import { isInsideQueryBuilder } from '../context/async-frame.js';
import { isOwnStatement } from './own-statements.js';
import {
  announceUpdate,
  expectKeyedWrite,
  forgetKeyedWrites,
  insertChange,
  insertRecordedElsewhere,
  readWithHidden,
  takeUpdateCapturedAround,
} from './criteria-write.js';
import { TransactionLost } from '../storage/savepoint.js';
import { mayWrite, rawWrites, savepointStatement, statementShape, type RawWrite, type RawWriteVerb } from './raw-statement.js';
import { heldElsewhere } from './runner-turn.js';
import { RawTables } from './raw-tables.js';
import { checkEntityOptions } from '../options/entity-options.js';
import type { CapturedChange } from './change-set.js';
import type { AuditChangeOperation } from '../interfaces/audit-event.interface.js';
import { attachQueryBuilderCapture, detachQueryBuilderCapture } from './query-builder.capture.js';

type ColumnMetadata = EntityMetadata['columns'][number];

const SUBSCRIBER = Symbol.for('nestjs-system-audit:subscriber');
/** A statement that ends with COMMIT: TypeORM's, or the module's journal rows sent in its message. */
const ENDS_WITH_COMMIT = /(?:^|;)\s*COMMIT\s*;?\s*$/i;

/** Whether a raw-looking write came from outside a query builder, and which unit of work sent it. */
interface QueryNote {
  raw: boolean;
  unit: UnitOfWork | null;
}
/** The first words of the statements a transaction of the module's may hold around a raw write. */
const PLAIN_DML: ReadonlySet<string> = new Set(['insert', 'update', 'delete', 'replace', 'merge', 'with', 'select', 'values', 'table']);
/** …and PostgreSQL's TRUNCATE, which a ROLLBACK undoes. */
const PLAIN_DML_OR_TRUNCATE: ReadonlySet<string> = new Set([...PLAIN_DML, 'truncate']);
/** The operation recorded for a raw write's verb. */
const RAW_OPERATIONS: Record<RawWriteVerb, AuditChangeOperation> = {
  insert: 'insert',
  replace: 'insert',
  update: 'update',
  merge: 'update',
  delete: 'delete',
  truncate: 'delete',
};
/** The data source types of MySQL and MariaDB. */
const MYSQL_TYPES: ReadonlySet<string> = new Set(['mysql', 'mariadb', 'aurora-mysql']);
/** The names TypeORM gives the savepoints of its nested transactions. */
const TYPEORM_SAVEPOINT = /^typeorm_\d+$/;
/** `text` with its ASCII letters in lower case, as PostgreSQL folds unquoted names and SQLite compares savepoint names. */
const asciiLowerCase = (text: string): string => text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
/** The entity of a raw write whose table no entity maps, or whose table could not be read. */
export const UNKNOWN_ENTITY = 'unknown';

/**
 * The safety net: a TypeORM subscriber on each captured data source that captures every
 * entity change (save, insert, update, upsert, remove, delete, soft remove/delete,
 * recover/restore, many-to-many links) and hands it to `ChangeCapture`.
 * Registered once per data source, removed on shutdown. Its hooks return a promise
 * only when they have work to do: TypeORM awaits only what a hook returns, so the many
 * queries and entities with nothing to capture cost no promise.
 */
@Injectable()
export class AuditSubscriber implements EntitySubscriberInterface, OnModuleInit, OnApplicationShutdown {
  readonly [SUBSCRIBER] = true;
  /**
   * Notes of raw-looking writes, by their parameters array (the same object reaches
   * beforeQuery and afterQuery), with the runner and text of each query: an app may send
   * one array (a constant) with several queries at once.
   */
  private readonly notedByParameters = new WeakMap<object, Array<{ runner: QueryRunner; sql: string; note: QueryNote }>>();
  /** What `beforeRemove` read for the entity being removed (fields TypeORM's row lacks, cascades), for `afterRemove` to record. */
  private readonly removing = new WeakMap<ObjectLiteral, { lacking: Snapshot; cascade: PendingChange[] }>();
  /** The stored values of `select: false` columns a `save()` changes, read by `beforeUpdate` for `afterUpdate`. */
  private readonly updating = new WeakMap<ObjectLiteral, Snapshot>();
  /** The rows the flush of `remove()` running on a query runner removes, while its beforeRemove hooks are called. */
  private readonly removals = new WeakMap<QueryRunner, RemovedRows>();
  /** Notes of writes sent without a parameters array, in order per query runner. */
  private readonly notedInOrder = new WeakMap<QueryRunner, QueryNote[]>();
  /** Tables of each captured data source, for raw SQL. */
  private readonly rawTablesOf = new WeakMap<DataSource, RawTables>();

  constructor(
    private readonly dataSources: AuditDataSources,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly capture: ChangeCapture,
    private readonly context: AuditContext,
  ) {}

  private rawTables(dataSource: DataSource): RawTables {
    let tables = this.rawTablesOf.get(dataSource);
    if (!tables) this.rawTablesOf.set(dataSource, (tables = new RawTables(dataSource)));
    return tables;
  }

  onModuleInit(): void {
    // The entity metadata is known once the data source is initialised: names in the options are checked against it.
    const initialised = this.dataSources.captured.filter((dataSource) => dataSource.isInitialized);
    if (initialised.length) checkEntityOptions(this.options, initialised.flatMap((dataSource) => dataSource.entityMetadatas));
    // Ids of entities with a secret key are digested wherever they are computed (targets of `log()` too).
    for (const dataSource of this.dataSources.all) useSecretKeys(dataSource, this.options.secretKeys);
    if (!this.options.enabled) return;
    for (const dataSource of this.dataSources.captured) {
      const subscribers = dataSource.subscribers as EntitySubscriberInterface[];
      if (subscribers.some((subscriber) => (subscriber as { [SUBSCRIBER]?: true })[SUBSCRIBER])) continue;
      subscribers.push(this);
      attachQueryBuilderCapture(dataSource, this.capture);
      attachTransactionScope(dataSource);
      attachPersistenceScope(dataSource);
      attachEntityEventHooks(dataSource);
      attachAfterQueryWait(dataSource);
      attachCommitStatements(dataSource);
      attachRawWriteTransaction(dataSource, {
        writes: (sql, parameters) => this.recordsRawWrite(dataSource, sql, parameters),
        started: (runner) => this.capture.transactionStarted(runner),
        beforeCommit: (runner) => this.capture.beforeCommit(runner),
        committed: (runner) => this.capture.committed(runner),
        rollingBack: (runner) => this.capture.rollingBack(runner),
      });
      // After the patches above: a statement of the app's that ends its transaction is seen first.
      attachCommitPoints(dataSource, {
        ending: (runner, sql, parameters) => this.capture.endingByHand(runner, sql, parameters),
        before: (runner, end) => {
          forgetKeyedWrites(runner);
          return this.capture.beforeEndingByHand(runner, end);
        },
        after: (runner, end, ok, error) => this.capture.afterEndingByHand(runner, end, ok, error),
      });
    }
  }

  onApplicationShutdown(): void {
    for (const dataSource of this.dataSources.all) dropSecretKeys(dataSource, this.options.secretKeys);
    if (!this.options.enabled) return;
    for (const dataSource of this.dataSources.captured) {
      const subscribers = dataSource.subscribers as EntitySubscriberInterface[];
      const index = subscribers.indexOf(this);
      if (index !== -1) subscribers.splice(index, 1);
      detachQueryBuilderCapture(dataSource, this.capture);
      detachRawWriteTransaction(dataSource);
      detachCommitPoints(dataSource);
    }
  }

  afterInsert(event: InsertEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, entity } = event;
    const fields = this.capture.trackedFields(metadata);
    if (!fields || !entity || insertRecordedElsewhere(entity, metadata)) return;
    // The key TypeORM reports is the row's: with `save(…, { reload: false })` it is not written
    // into the entity, which may still hold a key the database did not take (PostgreSQL
    // generates an increment key whatever the entity gave).
    const reported = event.entityId != null ? keyOf(metadata, event.entityId) : undefined;
    const reportedId = reported ? entityId(metadata, reported) : null;
    const key = reportedId !== null && reportedId !== entityId(metadata, entity) ? reported : undefined;
    const change = insertChange(metadata, fields, entity, key);
    // A generated key that could not be told (counted ids that do not hold): recorded without it, as partial.
    return this.capture.record(event.queryRunner, change.id === null ? { ...change, partial: true } : change);
  }

  /**
   * Before a `save()` updates a row, in its transaction: TypeORM's loaded row leaves out
   * `select: false` columns, so the stored value of each one the save changes is read here.
   * A row TypeORM's persistence writes knowing only its key (an orphan of a cascaded
   * one-to-many, a row linked or unlinked by its key): its events carry neither the entity
   * nor the row, so the write itself is captured, as a write by criteria.
   */
  beforeUpdate(event: UpdateEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, entity, databaseEntity } = event;
    if (!entity && !databaseEntity) return this.expectKeyed(event, 'update');
    if (!entity || !databaseEntity) return;
    const fields = this.capture.trackedFields(metadata);
    if (!fields) return;
    announceUpdate(event.queryRunner, metadata, entity, databaseEntity, event.updatedRelations);
    const hidden = fields.hidden;
    if (!hidden.length) return;
    const lacking = hidden.filter((column) => event.updatedColumns.includes(column) && column.getEntityValue(databaseEntity) === undefined);
    if (lacking.length) return this.readHidden(event, lacking);
  }

  private async readHidden(event: UpdateEvent<ObjectLiteral>, columns: ColumnMetadata[]): Promise<void> {
    const { metadata, queryRunner } = event;
    let read: { value: ObjectLiteral | null; hidden: boolean };
    try {
      read = await readWithHidden(
        queryRunner,
        metadata,
        columns,
        (hidden) =>
          hidden.length
            ? selectHidden(queryRunner.manager.createQueryBuilder(metadata.target, 'audit_updated').callListeners(false), hidden).withDeleted().whereInIds([metadata.getEntityIdMap(event.databaseEntity)]).getOne()
            : Promise.resolve(null),
        (message) => this.capture.warn(message),
      );
    } catch (error) {
      if (error instanceof TransactionLost) throw error.cause;
      throw error;
    }
    if (read.value && read.hidden) this.updating.set(event.entity!, this.capture.trackedFields(metadata)!.snapshot(read.value, columns));
  }

  beforeSoftRemove(event: SoftRemoveEvent<ObjectLiteral>): void {
    if (!event.entity && !event.databaseEntity && event.entityId !== undefined) this.expectKeyed(event, 'soft-delete');
  }

  beforeRecover(event: RecoverEvent<ObjectLiteral>): void {
    if (!event.entity && !event.databaseEntity && event.entityId !== undefined) this.expectKeyed(event, 'soft-delete');
  }

  /**
   * Notes a write of TypeORM's persistence of a row known by its key only. Not a write by
   * criteria (its builder reports an update with the values it sets, a delete without a key)
   * nor a junction row (links are captured whoever writes them).
   */
  private expectKeyed(event: UpdateEvent<ObjectLiteral> | RemoveEvent<ObjectLiteral>, kind: 'update' | 'delete' | 'soft-delete'): void {
    const { metadata } = event;
    if (metadata.tableType !== 'junction' && this.capture.trackedFields(metadata)) expectKeyedWrite(event.queryRunner, metadata, kind);
  }

  afterUpdate(event: UpdateEvent<ObjectLiteral>): Promise<void> | void {
    // Without the loaded row this is a write by criteria, captured around its query builder.
    const { metadata, entity, databaseEntity } = event;
    const fields = this.capture.trackedFields(metadata);
    if (!fields || !entity || !databaseEntity) return;
    const hidden = fields.hidden.length ? this.updating.get(entity) : undefined;
    if (hidden) this.updating.delete(entity);
    // Its write set a relation this event does not list: recorded whole, around the write.
    if (takeUpdateCapturedAround(event.queryRunner, entity)) return;
    const columns = fields.changed(event.updatedColumns, event.updatedRelations);
    if (columns.length === 0) return;
    const before = fields.snapshot(databaseEntity, columns);
    return this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, databaseEntity) ?? entityId(metadata, entity),
      operation: 'update',
      fields: diffSnapshots(hidden ? { ...before, ...hidden } : before, fields.snapshot(entity as ObjectLiteral, columns)),
    });
  }

  /**
   * Before a `remove()`, in its transaction: what TypeORM's reloaded row lacks (the ids of
   * to-one relations, when the entity passed in does not carry them, and the values of
   * `select: false` columns) and what the database will delete or change with the row. Without a loaded entity this is a delete by
   * criteria, captured around its query builder.
   */
  beforeRemove(event: RemoveEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, entity, databaseEntity } = event;
    if (!entity && !databaseEntity) return event.entityId === undefined ? undefined : this.expectKeyed(event, 'delete');
    const fields = entity && databaseEntity ? this.capture.trackedFields(metadata) : null;
    if (!fields) return;
    const missing = fields.hidden.length > 0 || fields.joinColumns.some((column) => column.getEntityValue(entity!) === undefined);
    const effects = deleteEffectsOf(event.queryRunner.connection, metadata);
    // A row another row's delete may cascade to: TypeORM reports it, the cascade read leaves it out.
    if (effects.cascaded) this.removedRows(event.queryRunner).add(metadata, databaseEntity!);
    if (!missing && !effects.cascadesPastRemove) {
      if (fields.joinColumns.length) this.removing.set(entity!, { lacking: fields.snapshot(entity!, fields.joinColumns), cascade: [] });
      return;
    }
    return this.readBeforeRemove(event, fields, missing, effects, effects.cascadesPastRemove ? this.removedRows(event.queryRunner) : undefined);
  }

  /**
   * The rows removed by the flush whose beforeRemove hooks are being called on `runner`.
   * TypeORM calls every hook of one flush in a row and only then awaits them: the set is
   * complete once they have all been called (a microtask later), and a new flush starts another.
   */
  private removedRows(runner: QueryRunner): RemovedRows {
    let removed = this.removals.get(runner);
    if (!removed) {
      const created = (removed = new RemovedRows());
      this.removals.set(runner, created);
      queueMicrotask(() => {
        if (this.removals.get(runner) === created) this.removals.delete(runner);
      });
    }
    return removed;
  }

  private async readBeforeRemove(
    event: RemoveEvent<ObjectLiteral>,
    fields: TrackedFields,
    missing: boolean,
    effects: DeleteEffects,
    removed: RemovedRows | undefined,
  ): Promise<void> {
    const { metadata, queryRunner } = event;
    const entity = event.entity!;
    const databaseEntity = event.databaseEntity;
    // The rest of the flush's beforeRemove hooks are called first: `removed` then holds every row it removes.
    await Promise.resolve();
    let row: ObjectLiteral | null = null;
    let hiddenRead = false;
    if (missing) {
      try {
        const read = await readWithHidden(
          queryRunner,
          metadata,
          fields.hidden,
          (hidden) =>
            selectHidden(queryRunner.manager.createQueryBuilder(metadata.target, 'audit_removed').callListeners(false), hidden)
              .withDeleted()
              .whereInIds([metadata.getEntityIdMap(databaseEntity)])
              .loadAllRelationIds({ relations: [...effects.toOne], disableMixedMap: true })
              .getOne(),
          (message) => this.capture.warn(message),
        );
        row = read.value;
        hiddenRead = read.hidden;
      } catch (error) {
        if (error instanceof TransactionLost) throw error.cause;
        throw error;
      }
    }
    const lacking = fields.snapshot(row ?? entity, row ? [...fields.joinColumns, ...(hiddenRead ? fields.hidden : [])] : fields.joinColumns);
    const cascade = effects.cascadesPastRemove ? await DeleteCascade.read(this.capture, queryRunner.connection, queryRunner, metadata, [databaseEntity], true, removed) : [];
    this.removing.set(entity, { lacking, cascade });
  }

  afterRemove(event: RemoveEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, databaseEntity, entity } = event;
    const fields = this.capture.trackedFields(metadata);
    const row = databaseEntity ?? entity;
    if (!fields || !row) return;
    const before = entity ? this.removing.get(entity) : undefined;
    if (before) this.removing.delete(entity!);
    const deleted = this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, databaseEntity) ?? idOf(metadata, event.entityId),
      operation: 'delete',
      fields: snapshotFields(before ? { ...fields.snapshot(row), ...before.lacking } : fields.snapshot(row), 'from'),
    });
    if (!before?.cascade.length) return deleted;
    return deleted.then(() => this.capture.recordAll(event.queryRunner, before.cascade));
  }

  afterSoftRemove(event: SoftRemoveEvent<ObjectLiteral>): Promise<void> | void {
    return this.softChange(event);
  }

  afterRecover(event: RecoverEvent<ObjectLiteral>): Promise<void> | void {
    return this.softChange(event);
  }

  afterTransactionStart(event: TransactionStartEvent): void {
    this.capture.transactionStarted(event.queryRunner);
  }

  beforeTransactionCommit(event: TransactionCommitEvent): Promise<void> | void {
    return this.capture.beforeCommit(event.queryRunner);
  }

  afterTransactionCommit(event: TransactionCommitEvent): void {
    forgetKeyedWrites(event.queryRunner);
    return this.capture.committed(event.queryRunner);
  }

  beforeTransactionRollback(event: TransactionRollbackEvent): void {
    forgetKeyedWrites(event.queryRunner);
    this.capture.rollingBack(event.queryRunner);
  }

  /**
   * Notes, per query runner and in order, whether a statement is raw (not from a query
   * builder) and which unit of work sent it. Taken here, in the caller's async context:
   * some drivers (MySQL with TypeORM 0.3) report the end of a query from a callback
   * where that context is lost.
   */
  beforeQuery(event: BeforeQueryEvent): void {
    // Every statement the app sends passes here: reads leave after a check that allocates nothing.
    if (!mayWrite(event.query) || isOwnStatement(event.parameters)) return;
    const note: QueryNote = { raw: !isInsideQueryBuilder(), unit: this.context.current() ?? null };
    // Keyed by the parameters object where there is one: a driver that skips afterQuery for
    // a failed statement (TypeORM 0.3's better-sqlite3) then leaves no stale note behind.
    if (event.parameters && typeof event.parameters === 'object') {
      const notes = this.notedByParameters.get(event.parameters);
      const entry = { runner: event.queryRunner, sql: event.query, note };
      if (!notes) this.notedByParameters.set(event.parameters, [entry]);
      else {
        // The same query on the same runner: a note left by a failed run (a driver that sends
        // no afterQuery then, TypeORM 0.3's better-sqlite3) gives way to this one.
        const stale = notes.findIndex((noted) => noted.runner === entry.runner && noted.sql === entry.sql);
        if (stale === -1) notes.push(entry);
        else notes[stale] = entry;
      }
      return;
    }
    const queue = this.notedInOrder.get(event.queryRunner) ?? [];
    queue.push(note);
    this.notedInOrder.set(event.queryRunner, queue);
  }

  /**
   * SQL run by hand (`query()`): each table it writes is recorded as a partial change of
   * the table's entity, or of the `unknown` entity (with the table's name, when it could
   * be read) when no entity maps it. Writes of the module's own tables and TypeORM's
   * bookkeeping are not changes; nor are those of entities that are not captured.
   */
  afterQuery(event: AfterQueryEvent): Promise<void> | void {
    // A failed COMMIT (TypeORM's, or the module's journal rows sent with it): why it failed.
    if (!event.success && ENDS_WITH_COMMIT.test(event.query)) this.capture.commitFailed(event.queryRunner, event.error);
    const runner = event.queryRunner;
    // A statement failing in a transaction: on MySQL and MariaDB, a deadlock rolled the whole transaction back.
    if (!event.success && runner.isTransactionActive) this.failedInTransaction(event);
    if (event.success && runner.isTransactionActive && !isOwnStatement(event.parameters)) this.followSavepoint(runner, event.query);
    if (!mayWrite(event.query) || isOwnStatement(event.parameters)) return;
    const parameters = event.parameters && typeof event.parameters === 'object' ? event.parameters : undefined;
    const noted = parameters ? this.takeNote(parameters, event.queryRunner, event.query) : this.notedInOrder.get(event.queryRunner)?.shift();
    if (!event.success || !noted?.raw) return;
    const changes: Array<Omit<CapturedChange, 'at'>> = [];
    const tables = this.rawTables(event.queryRunner.connection);
    for (const write of rawWrites(event.query, { mysql: tables.isMysql })) {
      const change = this.rawChange(tables, write);
      if (change) changes.push(change);
    }
    if (changes.length === 0) return;
    // Where TypeORM resolves the query without waiting for this (0.3 on MySQL/MariaDB and
    // better-sqlite3), the query waits for it: recorded before the app goes on (and commits).
    return waitForCapture(event, () => this.recordRaw(event.queryRunner, changes, noted.unit));
  }

  /**
   * A raw `SAVEPOINT`, `ROLLBACK TO SAVEPOINT` or `RELEASE SAVEPOINT` the app ran in a
   * transaction on `runner`: the changes made since a savepoint are kept or dropped with
   * it, as those of a nested transaction are. Names are compared as the database does:
   * case-insensitively, but as written when quoted on PostgreSQL. TypeORM's own savepoints
   * (`typeorm_<n>`, of its nested transactions) are followed through its transaction events,
   * except a `ROLLBACK TO` one, which undoes its level without TypeORM knowing.
   */
  private followSavepoint(runner: QueryRunner, sql: string): void {
    const type = runner.connection.options.type;
    const mysql = MYSQL_TYPES.has(type);
    const statement = savepointStatement(sql, { mysql });
    if (!statement || heldElsewhere(runner)) return;
    const name = statement.quoted && type === 'postgres' ? statement.name : mysql ? statement.name.toLowerCase() : asciiLowerCase(statement.name);
    if (TYPEORM_SAVEPOINT.test(name)) {
      // TypeORM's own savepoints are followed through its transaction events, but a ROLLBACK TO
      // one sent by hand undoes that level without TypeORM knowing.
      if (statement.verb === 'rollback') this.capture.rolledBackToTypeormSavepoint(runner, Number(name.slice('typeorm_'.length)));
      return;
    }
    if (statement.verb === 'savepoint') this.capture.savepointSet(runner, name, mysql);
    else if (statement.verb === 'rollback') this.capture.rolledBackToSavepoint(runner, name);
    else this.capture.savepointReleased(runner, name);
  }

  /**
   * A statement failed in a transaction on `runner`. On MySQL and MariaDB, a deadlock
   * (ER_LOCK_DEADLOCK) has InnoDB roll the whole transaction back, and the session goes on
   * outside any: what was recorded in it never happened. (A lock wait that ran out rolls
   * back only its statement, unless the server runs with `innodb_rollback_on_timeout`.)
   * Elsewhere a failed statement rolls back nothing more than itself (SQLite) or aborts the
   * transaction until it is rolled back (PostgreSQL): nothing of it commits.
   */
  private failedInTransaction(event: AfterQueryEvent): void {
    const runner = event.queryRunner;
    if (!MYSQL_TYPES.has(runner.connection.options.type) || isOwnStatement(event.parameters)) return;
    const error = event.error as { code?: unknown; errno?: unknown } | undefined;
    if (error?.code !== 'ER_LOCK_DEADLOCK' && error?.errno !== 1213) return;
    if (heldElsewhere(runner)) return;
    forgetKeyedWrites(runner);
    this.capture.transactionLost(runner);
  }

  /** The note `beforeQuery` took of the query `sql` with `parameters` on `runner` (removed). */
  private takeNote(parameters: object, runner: QueryRunner, sql: string): QueryNote | undefined {
    const notes = this.notedByParameters.get(parameters);
    if (!notes) return undefined;
    let index = notes.findIndex((entry) => entry.runner === runner && entry.sql === sql);
    if (index === -1) index = notes.findIndex((entry) => entry.runner === runner);
    if (index === -1) return undefined;
    const [entry] = notes.splice(index, 1);
    if (notes.length === 0) this.notedByParameters.delete(parameters);
    return entry?.note;
  }

  /**
   * Whether raw SQL `sql` sent on `dataSource` is one statement of plain DML that writes
   * tables whose changes are recorded, and that a transaction of the module's can hold.
   * What the statement reader could misread runs as it is (its record follows it): a text
   * of several statements (`BEGIN; …; COMMIT` among them), one with a backslash (escapes
   * depend on the server's settings), another statement than plain DML (a transaction's
   * own, DDL, MySQL's and MariaDB's `TRUNCATE`, which commit at once); on MySQL and
   * MariaDB, a text naming a table or view whose writes a ROLLBACK does not undo (MyISAM,
   * Aria), or writing a table not read as InnoDB — were the COMMIT to fail, the record
   * would be rolled back while the write stayed.
   */
  private recordsRawWrite(dataSource: DataSource, sql: string, parameters: unknown): boolean | Promise<boolean> {
    if (!mayWrite(sql) || isOwnStatement(parameters) || sql.includes('\\')) return false;
    const tables = this.rawTables(dataSource);
    const dialect = { mysql: tables.isMysql };
    const { heads, names } = statementShape(sql, dialect);
    if (heads.length !== 1 || !(tables.isMysql ? PLAIN_DML : PLAIN_DML_OR_TRUNCATE).has(heads[0]!)) return false;
    const recorded = rawWrites(sql, dialect).filter((write) => this.rawChange(tables, write) !== undefined);
    if (recorded.length === 0) return false;
    if (!tables.isMysql) return true;
    return this.transactionalOnly(tables, names, recorded);
  }

  /** MySQL/MariaDB: whether no name of the text is a table a ROLLBACK does not undo, and every table written is read as transactional. */
  private async transactionalOnly(tables: RawTables, names: ReadonlySet<string>, writes: readonly RawWrite[]): Promise<boolean> {
    try {
      const unsafe = await tables.nonTransactionalNames();
      for (const name of names) if (unsafe.has(name)) return false;
    } catch {
      return false;
    }
    return tables.transactional(writes.map((write) => write.table));
  }

  /** The change a raw write records, or undefined when it records none. */
  private rawChange(tables: RawTables, write: RawWrite): Omit<CapturedChange, 'at'> | undefined {
    const operation = RAW_OPERATIONS[write.verb];
    const owner = write.table ? tables.owner(write.table) : 'unknown';
    if (owner === 'unrecorded') return undefined;
    if (owner === 'unknown') {
      const table = write.table && (write.table.schema ? `${write.table.schema}.${write.table.name}` : write.table.name);
      return { entity: UNKNOWN_ENTITY, id: null, operation, fields: {}, partial: true, ...(table ? { table } : {}) };
    }
    if (!this.capture.trackedFields(owner.entity)) return undefined;
    // A junction table's rows are links of the entity owning the relation: an update of it.
    return { entity: owner.entity.name, id: null, operation: owner.links ? 'update' : operation, fields: {}, partial: true };
  }

  private async recordRaw(runner: QueryRunner, changes: Array<Omit<CapturedChange, 'at'>>, unit: UnitOfWork | null): Promise<void> {
    for (const change of changes) await this.capture.record(runner, change, unit);
  }

  /** A soft delete or recovery is an update of the delete-date column (named `deleted` when it sets it). */
  private softChange(event: SoftRemoveEvent<ObjectLiteral> | RecoverEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, entity, databaseEntity } = event;
    const fields = this.capture.trackedFields(metadata);
    const column = metadata.deleteDateColumn;
    if (!fields || !entity || !column || !fields.columns.includes(column)) return;
    const before = databaseEntity ? fields.snapshot(databaseEntity, [column]) : {};
    return this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, databaseEntity) ?? entityId(metadata, entity),
      operation: 'update',
      fields: diffSnapshots(before, fields.snapshot(entity, [column])),
    });
  }
}

/** TypeORM's `entityId` of an event (an id map, or the id itself) as an object holding the key. */
function keyOf(metadata: EntityMetadata, id: unknown): ObjectLiteral {
  if (id !== null && typeof id === 'object') return id as ObjectLiteral;
  return metadata.primaryColumns.length === 1 ? metadata.primaryColumns[0]!.createValueMap(id) : {};
}

/** The id string of TypeORM's `entityId` of a remove event: an id map, or the id itself. */
function idOf(metadata: EntityMetadata, id: unknown): string | null {
  return id !== null && typeof id === 'object' ? entityId(metadata, id as ObjectLiteral) : idFromKeyValues(metadata, [id]);
}
