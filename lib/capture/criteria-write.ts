import type { DataSource, EntityMetadata, ObjectLiteral, QueryRunner, SelectQueryBuilder } from 'typeorm';
import type { WriteKind, WriteQueryBuilderState } from '../integrations/typeorm-write-query-builders.js';
import type { AuditChangeOperation } from '../interfaces/audit-event.interface.js';
import type { ChangeCapture } from './change-capture.js';
import type { CapturedChange } from './change-set.js';
import { DeleteCascade, deleteEffectsOf, junctionLinks, owningRelation, type PendingChange } from './delete-cascade.js';
import { entityId } from './entity-identity.js';
import { diffSnapshots, selectHidden, snapshotFields, type TrackedFields } from './entity-snapshot.js';
import { ownStatement } from './own-statements.js';
import { classifyDatabaseError } from '../storage/database-errors.js';
import { isPersistingWithEvents, runAsTurnHolder } from '../context/async-frame.js';
import { escapedTable } from '../storage/sql.js';
import { inSavepoint, TransactionLost } from '../storage/savepoint.js';
import { isSqlite } from '../storage/drivers.js';
import { takeTurn } from './runner-turn.js';

type RelationMetadata = EntityMetadata['relations'][number];
type ColumnMetadata = EntityMetadata['columns'][number];

/** Databases whose rows a criteria write's read locks with `SELECT … FOR UPDATE` (or its equivalent). */
const LOCKING_DRIVERS: ReadonlySet<string> = new Set([
  'postgres',
  'aurora-postgres',
  'cockroachdb',
  'mysql',
  'mariadb',
  'aurora-mysql',
  'oracle',
  'mssql',
]);

/**
 * Databases where a failed statement aborts the whole transaction: the module's reads run
 * in a savepoint there, so that one that fails leaves the app's transaction (and write) alone.
 */
const ABORTING_DRIVERS: ReadonlySet<string> = new Set(['postgres', 'aurora-postgres', 'cockroachdb']);

/**
 * One of the module's reads in the app's transaction. Where a failed statement aborts the
 * whole transaction (PostgreSQL), in a savepoint rolled back to when the read fails: the
 * read's error is thrown, the transaction goes on. When even that fails — or, on MySQL and
 * MariaDB, the read lost to another transaction (a deadlock, which rolls the whole
 * transaction back; a lock wait that ran out) — the transaction is gone:
 * {@link TransactionLost}, which the write does not outlive.
 */
export async function readInTransaction<T>(runner: QueryRunner, read: () => Promise<T>): Promise<T> {
  if (!ABORTING_DRIVERS.has(runner.connection.options.type)) {
    try {
      return await read();
    } catch (error) {
      if (classifyDatabaseError(error) !== 'data') throw new TransactionLost(error);
      throw error;
    }
  }
  return inSavepoint(runner, 'nestjs_system_audit_read', read);
}

/** Entities whose `select: false` columns the app's database role may not read (a column grant): learned from a read that failed. */
const unreadableHidden = new WeakSet<EntityMetadata>();

/**
 * A read that selects `hidden` (`select: false` columns) when the role may read them: a
 * read of them that fails (a column grant that leaves out a password hash) is done again
 * without them, and they are not asked for again for that entity. `hidden` in the result
 * says whether they were read.
 */
export async function readWithHidden<T>(
  runner: QueryRunner,
  metadata: EntityMetadata,
  hidden: readonly ColumnMetadata[],
  read: (hidden: readonly ColumnMetadata[]) => Promise<T>,
  warn: (message: string) => void,
): Promise<{ value: T; hidden: boolean }> {
  if (hidden.length && !unreadableHidden.has(metadata)) {
    try {
      return { value: await readInTransaction(runner, () => read(hidden)), hidden: true };
    } catch (error) {
      if (error instanceof TransactionLost) throw error;
      unreadableHidden.add(metadata);
      warn(`Could not read the select: false column(s) of ${metadata.name} (${(error as Error).message}); they are recorded without their stored values`);
    }
  }
  return { value: await readInTransaction(runner, () => read([])), hidden: false };
}

/** The `select: false` columns of `metadata` the module reads: none once a read of them failed. */
const readableHidden = (metadata: EntityMetadata, hidden: readonly ColumnMetadata[]): readonly ColumnMetadata[] => (unreadableHidden.has(metadata) ? [] : hidden);

/** Databases whose RETURNING an insert cannot be given more columns the usual way (SQL Server's OUTPUT needs a table variable, Oracle binds). */
const OWN_RETURNING_FORM: ReadonlySet<string> = new Set(['mssql', 'oracle']);

/** Databases whose driver counts an insert's generated ids from the one the database reports, without RETURNING: the last (SQLite)… */
const LAST_ID_DRIVERS: ReadonlySet<string> = new Set(['sqlite', 'better-sqlite3', 'sqljs', 'capacitor', 'cordova', 'react-native', 'nativescript', 'expo']);
/** …or the first (MySQL, MariaDB before 10.5). */
const FIRST_ID_DRIVERS: ReadonlySet<string> = new Set(['mysql', 'mariadb', 'aurora-mysql']);

/**
 * Value objects of inserts recorded here rather than by the insert listener, while their
 * write runs: those of upserts and of inserts that ignore conflicts, and those of an insert
 * by query builder that does not read generated values back (its listener runs before the
 * generated key is known). Counted: concurrent inserts may share one object.
 */
const recordedInsertValues = new WeakMap<object, Map<EntityMetadata, number>>();

/** Notes that the insert of `values` into `metadata`'s table is recorded here (counted: concurrent inserts may share one object). */
function recordingInsertOf(values: object, metadata: EntityMetadata): void {
  let counts = recordedInsertValues.get(values);
  if (!counts) recordedInsertValues.set(values, (counts = new Map()));
  counts.set(metadata, (counts.get(metadata) ?? 0) + 1);
}

/** Undoes one {@link recordingInsertOf}. */
function recordedInsertOf(values: object, metadata: EntityMetadata): void {
  const counts = recordedInsertValues.get(values);
  const count = counts?.get(metadata) ?? 0;
  if (count > 1) counts!.set(metadata, count - 1);
  else counts?.delete(metadata);
  if (counts?.size === 0) recordedInsertValues.delete(values);
}

/** Whether the insert of `values` into `metadata`'s table is recorded here, not by the insert listener. */
export function insertRecordedElsewhere(values: object, metadata: EntityMetadata): boolean {
  return (recordedInsertValues.get(values)?.get(metadata) ?? 0) > 0;
}

/**
 * The change recording an insert of `values` (the fields they set, as given), under `key`
 * when it is given (the key the row got, which was not written into them), else under the
 * key they hold.
 */
export function insertChange(metadata: EntityMetadata, fields: TrackedFields, values: ObjectLiteral, key: ObjectLiteral | undefined): Omit<CapturedChange, 'at'> {
  const snapshot = fields.snapshot(values);
  if (!key) return { entity: metadata.name, id: entityId(metadata, values), operation: 'insert', fields: snapshotFields(snapshot, 'to') };
  const stored = { ...snapshot, ...fields.snapshot(key, fields.columns.filter((column) => column.isPrimary)) };
  return { entity: metadata.name, id: entityId(metadata, key), operation: 'insert', fields: snapshotFields(stored, 'to') };
}

/** `rows` (an insert's RETURNING rows) without `columns`; none at all when nothing else was returned (as without RETURNING). */
function withoutColumns(rows: unknown[], columns: readonly ColumnMetadata[]): unknown[] {
  const trimmed = rows.map((row) => {
    if (row === null || typeof row !== 'object') return row;
    const rest: ObjectLiteral = { ...(row as ObjectLiteral) };
    for (const column of columns) delete rest[column.databaseName];
    return rest;
  });
  return trimmed.every((row) => row !== null && typeof row === 'object' && Object.keys(row).length === 0) ? [] : trimmed;
}

/**
 * Writes TypeORM's persistence makes of rows it knows by their key only (`Subject`s built
 * from an identifier, with no entity and no loaded row): the orphans of a cascaded
 * one-to-many (deleted, soft-deleted or unlinked, `orphanedRowAction`), and rows of a
 * one-to-many or inverse one-to-one linked or unlinked by their key. Its events reach the
 * subscriber with neither entity nor row; the subscriber's before-hooks note them here, per
 * query runner, and the write that follows (listener-less, by that key) is captured as a
 * write by criteria: its rows read before it, in its transaction, and after.
 */
const keyedWrites = new WeakMap<QueryRunner, Map<EntityMetadata, Partial<Record<WriteKind, number>>>>();

/** Notes that TypeORM's persistence will make a `kind` write of a row of `metadata` known by its key only, on `runner`. */
export function expectKeyedWrite(runner: QueryRunner, metadata: EntityMetadata, kind: Exclude<WriteKind, 'insert'>): void {
  let byEntity = keyedWrites.get(runner);
  if (!byEntity) keyedWrites.set(runner, (byEntity = new Map()));
  const counts = byEntity.get(metadata) ?? {};
  counts[kind] = (counts[kind] ?? 0) + 1;
  byEntity.set(metadata, counts);
}

/** Forgets what was noted for `runner` (its transaction ended: a write noted and not made never will be). */
export function forgetKeyedWrites(runner: QueryRunner): void {
  keyedWrites.delete(runner);
  announcedUpdates.delete(runner);
  updatesCapturedAround.delete(runner);
}

/** A row `save()` is about to update, with the relations its update events list. */
interface AnnouncedUpdate {
  entity: ObjectLiteral;
  relations: readonly RelationMetadata[];
}

/**
 * Per query runner, per entity, by id: the rows TypeORM's persistence announced it will
 * update. Its update may set more than the events list: a cascaded one-to-many (or inverse
 * one-to-one) given a child by its key (`post.lines = [{ id }]`) moves the child to its new
 * parent through a change TypeORM keeps to itself. Such an update is captured as a write by
 * criteria (read before, written, read after), and its after-update event records nothing.
 */
const announcedUpdates = new WeakMap<QueryRunner, Map<EntityMetadata, Map<string, AnnouncedUpdate>>>();

/** Per data source, per column: whether the app's role may read it back (PostgreSQL: RETURNING needs SELECT). */
const returnRights = new WeakMap<DataSource, Map<ColumnMetadata, Promise<boolean>>>();

/**
 * Per query runner, the entities whose update was captured as a write by criteria (once
 * the write succeeded): forgotten with the transaction, so that a save that failed after
 * it does not hide a later save of the same object.
 */
const updatesCapturedAround = new WeakMap<QueryRunner, WeakSet<ObjectLiteral>>();

/** Per entity: the relations another entity's save can set in its rows (owning sides some one-to-many or one-to-one names as its inverse side). */
const inverseSetRelations = new WeakMap<EntityMetadata, RelationMetadata[]>();

function relationsSetFromInverse(metadata: EntityMetadata): RelationMetadata[] {
  let relations = inverseSetRelations.get(metadata);
  if (!relations) {
    // The inverse side is named by the one-to-many (or inverse one-to-one), whether or not the
    // many-to-one names it back: look from every entity's relations.
    const targeted = new Set<RelationMetadata>();
    for (const other of metadata.connection.entityMetadatas) {
      for (const relation of other.relations) {
        if ((relation.isOneToMany || relation.isOneToOneNotOwner) && relation.inverseRelation) targeted.add(relation.inverseRelation);
      }
    }
    relations = metadata.relations.filter((relation) => (relation.isManyToOne || relation.isOneToOneOwner) && targeted.has(relation));
    inverseSetRelations.set(metadata, relations);
  }
  return relations;
}

/**
 * Notes, before TypeORM's persistence updates `databaseEntity`'s row from `entity`, the
 * relations its events list; only for entities another entity's save can re-parent.
 */
export function announceUpdate(runner: QueryRunner, metadata: EntityMetadata, entity: ObjectLiteral, databaseEntity: ObjectLiteral, relations: readonly RelationMetadata[]): void {
  if (relationsSetFromInverse(metadata).length === 0) return;
  const id = entityId(metadata, databaseEntity);
  if (id === null) return;
  let byEntity = announcedUpdates.get(runner);
  if (!byEntity) announcedUpdates.set(runner, (byEntity = new Map()));
  let byId = byEntity.get(metadata);
  if (!byId) byEntity.set(metadata, (byId = new Map()));
  byId.set(id, { entity, relations });
}

/** Whether the update of `entity` on `runner` was captured as a write by criteria (and is not to be recorded from its event); once. */
export function takeUpdateCapturedAround(runner: QueryRunner, entity: ObjectLiteral): boolean {
  return updatesCapturedAround.get(runner)?.delete(entity) ?? false;
}

function capturedAround(runner: QueryRunner, entity: ObjectLiteral): void {
  let entities = updatesCapturedAround.get(runner);
  if (!entities) updatesCapturedAround.set(runner, (entities = new WeakSet()));
  entities.add(entity);
}

/**
 * For a listener-less update by one key: undefined when no update of that row was announced;
 * false when it sets only what its events list; otherwise the announced entity (the update
 * is to be captured around, and that entity's event records nothing).
 */
function takeAnnouncedUpdate(qb: WriteQueryBuilderState, metadata: EntityMetadata): ObjectLiteral | false | undefined {
  const runner = qb.queryRunner;
  const keys = qb.whereEntities;
  if (!runner || keys.length !== 1) return undefined;
  const byId = announcedUpdates.get(runner)?.get(metadata);
  const id = byId ? entityId(metadata, keys[0]) : null;
  const announced = id === null ? undefined : byId!.get(id);
  if (!announced) return undefined;
  byId!.delete(id!);
  const values = qb.valuesSet;
  if (!values || Array.isArray(values)) return false;
  // A lazy relation's value set holds the related key under its own name, not under the promise's.
  const unlisted = relationsSetFromInverse(metadata).some((relation) => !announced.relations.includes(relation) && relation.getEntityValue(values, true) !== undefined);
  return unlisted ? announced.entity : false;
}

/** Whether this listener-less write is one noted: a delete takes every noted delete (TypeORM deletes them in one statement). */
function takeKeyedWrite(runner: QueryRunner | undefined, metadata: EntityMetadata, kind: WriteKind): boolean {
  const byEntity = runner ? keyedWrites.get(runner) : undefined;
  const counts = byEntity?.get(metadata);
  const count = counts?.[kind];
  if (!count) return false;
  counts![kind] = kind === 'delete' ? 0 : count - 1;
  return true;
}

/** A junction column's value in a value set or a loaded junction row. */
function junctionValue(column: ColumnMetadata, row: ObjectLiteral): unknown {
  const value = (row[column.propertyName] ?? row[column.databaseName]) as unknown;
  return value !== null && typeof value === 'object' && !(value instanceof Date) && column.referencedColumn
    ? column.referencedColumn.getEntityValue(value as ObjectLiteral)
    : value;
}

/** One write by criteria: reads what it will touch, runs it, reads the result, records the difference. */
export class CriteriaWrite {
  private readonly kind: WriteKind;
  private readonly metadata?: EntityMetadata;
  private readonly fields: TrackedFields | null;
  /** Starts the module's own transaction around the write, where it has one (see inTransaction); once. */
  private begin: (() => Promise<void>) | undefined;

  constructor(
    private readonly capture: ChangeCapture,
    private readonly qb: WriteQueryBuilderState,
    private readonly execute: (afterStatement?: () => Promise<void>, beforeStatement?: () => Promise<void>) => Promise<unknown>,
  ) {
    this.kind = qb.kind;
    this.metadata = qb.metadata;
    this.fields = this.metadata ? capture.trackedFields(this.metadata) : null;
  }

  async run(): Promise<unknown> {
    const metadata = this.metadata;
    if (!metadata) return this.write();
    // Many-to-many links live in junction tables, which TypeORM reports without values:
    // they are captured here, whoever writes them (save, RelationQueryBuilder).
    const relation = metadata.tableType === 'junction' ? owningRelation(this.qb.dataSource, metadata) : undefined;
    if (relation) {
      if (!this.capture.trackedFields(relation.entityMetadata) || this.kind === 'update' || this.kind === 'soft-delete') return this.write();
      return this.inTransaction(async (runner) => {
        await this.begin!();
        return this.captureJunction(runner, metadata, relation);
      });
    }
    if (this.kind === 'insert' && this.qb.insertsFromSelect) {
      const fields = this.fields;
      if (!fields) return this.write();
      return this.inTransaction(async (runner) => {
        await this.begin!();
        return this.insertFromSelect(runner, metadata, fields);
      });
    }
    // TypeORM's own persistence with events (save/remove/…) turns listeners off and reports
    // through the subscriber; so do plain inserts with listeners. Those are not writes by
    // criteria. A listener-less write outside such a persistence reaches no subscriber: it is
    // captured here as the same write with listeners is.
    const persisting = !this.qb.callListeners && isPersistingWithEvents(this.qb.dataSource);
    const unreported = !this.qb.callListeners && !persisting;
    const moved = persisting && this.kind === 'update' ? takeAnnouncedUpdate(this.qb, metadata) : undefined;
    const byCriteria = !persisting
      ? this.kind !== 'insert' || this.qb.isUpsert || this.qb.ignoresConflicts
      : moved !== undefined
        ? moved !== false
        : this.kind !== 'insert' && takeKeyedWrite(this.qb.queryRunner, metadata, this.kind);
    const fields = this.fields;
    if (!fields) return this.write();
    if (!byCriteria) {
      // A plain insert by a query builder or `repository.insert()` runs in no transaction of
      // TypeORM's: give it one, so that its record (journal or fallback row) commits with it.
      const plainInsert = this.kind === 'insert' && !persisting && !this.qb.queryRunner?.isTransactionActive;
      // In the module's own transaction, `commitOwn` commits it before the insert's after-hooks (see inTransaction).
      const write = (commitOwn?: () => Promise<void>) =>
        this.kind === 'insert' && !this.qb.updatesEntity
          ? this.insertWithIds(metadata, fields, !persisting, commitOwn)
          : unreported && this.kind === 'insert'
            ? this.insertRecorded(metadata, fields)
            : commitOwn
              ? this.insertBeforeHooks(metadata, fields, commitOwn)
              : this.write();
      return plainInsert ? this.inTransaction((_runner, commitOwn) => write(commitOwn)) : write();
    }
    // The flag is kept on the save's own runner, the one its after-update event names.
    const saving = this.qb.queryRunner;
    return this.inTransaction(async (runner, commitOwn) => {
      const result = await this.captureAround(runner, metadata, fields, commitOwn);
      if (moved) capturedAround(saving ?? runner, moved);
      return result;
    });
  }

  /**
   * Runs the write (`afterStatement` once its statement is done, before the app's hooks of
   * its after-event) and `prepare` before its statement: by default the start of the
   * module's own transaction around it, where it has one. TypeORM calls the app's hooks of
   * its before-event first, in no transaction when it runs in none: they may write, and
   * what they write stays should the statement fail; they may write its rows through another
   * connection, which would wait on the locks of the module's read of them. `prepare` runs
   * once they are done. With listeners off there are none (and with `useTransaction(true)`
   * TypeORM opens its transaction before them, where it sees none open): then it runs first.
   */
  private async write(afterStatement?: () => Promise<void>, prepare = this.begin): Promise<unknown> {
    if (!prepare) return this.execute(afterStatement);
    let prepared: Promise<void> | undefined;
    const once = () => (prepared ??= prepare());
    const runner = this.qb.queryRunner;
    if (!runner || !this.qb.callListeners || this.qb.usesTransaction) {
      await once();
      return this.execute(afterStatement);
    }
    // Should TypeORM send the statement without calling hooks of the before-event (an
    // insert without value sets), `prepare` runs before it all the same.
    const query = (...args: Parameters<QueryRunner['query']>): Promise<unknown> => once().then(() => runner.query(...args));
    this.qb.setQueryRunner(Object.create(runner, { query: { value: query, configurable: true, writable: true } }) as QueryRunner);
    try {
      const result = await this.execute(afterStatement, once);
      await once();
      return result;
    } finally {
      this.qb.setQueryRunner(runner);
    }
  }

  /**
   * An insert that does not read generated values back (`save(…, { reload: false })`, a
   * query builder's `updateEntity(false)`): TypeORM then reports no id, and its insert
   * would be recorded without one. The generated key is asked for (RETURNING, where the
   * database has it; others report an increment id anyway) and handed to TypeORM as the
   * insert's identifiers, which reach the subscriber of its persistence. With `recordsHere`
   * (an insert no persistence with events reports: a query builder's, whose listener runs
   * before the ids are known, or one with listeners off), its value sets are recorded here,
   * after the write, and its result is left as TypeORM gives it. The value objects are left
   * as the app wanted them.
   */
  private async insertWithIds(metadata: EntityMetadata, fields: TrackedFields, recordsHere: boolean, commitOwn?: () => Promise<void>): Promise<unknown> {
    const generated = metadata.primaryColumns.filter((column) => column.isGenerated);
    if (generated.length === 0) return recordsHere && !this.qb.callListeners ? this.insertRecorded(metadata, fields) : this.write();
    const driver = this.qb.dataSource.driver;
    const type = this.qb.dataSource.options.type;
    // A query builder's result is the app's: on MySQL and MariaDB, RETURNING would turn the
    // server's OK packet into rows, so the ids are counted there instead — unless the app
    // asked for rows itself.
    const returning =
      driver.isReturningSqlSupported('insert') &&
      !OWN_RETURNING_FORM.has(type) &&
      !(recordsHere && FIRST_ID_DRIVERS.has(type) && !this.qb.returnsRows) &&
      (await this.mayReturn(metadata, generated));
    const added = returning ? this.qb.returnColumns(generated) : [];
    const valueSets = this.qb.valueSets();
    // Its listener (with listeners on) runs before the generated key is known, and records nothing.
    const hushed = this.qb.callListeners;
    const runner = this.qb.queryRunner;
    // The keys of the rows, from what the database returned (`raw`: the statement's raw
    // result, as the insert's result holds it), and their records: once the statement is
    // done, before the app's after-hooks where the module's own transaction is committed then.
    let keys: Array<ObjectLiteral | undefined> = [];
    let recorded: Promise<void> | undefined;
    const record = (raw: unknown) =>
      (recorded ??= (async () => {
        const counted = returning || (await this.countedIdsHold(runner, generated, valueSets));
        keys = valueSets.map((values, index) => {
          let returned: ObjectLiteral | undefined;
          try {
            const row = Array.isArray(raw) ? (raw[index] as unknown) : raw;
            returned = counted ? driver.createGeneratedMap(metadata, row, index, valueSets.length) : undefined;
          } catch {
            returned = undefined;
          }
          const local = this.qb.locallyGenerated(index);
          const key: ObjectLiteral = {};
          for (const column of metadata.primaryColumns) {
            const value = [returned, local, values].map((source) => (source ? column.getEntityValue(source) : undefined)).find((v) => v !== undefined && v !== null);
            if (value === undefined || typeof value === 'function') return undefined;
            Object.assign(key, column.createValueMap(value));
          }
          return metadata.getEntityIdMap(key);
        });
        if (recordsHere) {
          // What the database completed (defaults, creation dates, versions) is read back, as an
          // insert that reads generated values back has it.
          const stored = runner ? await this.storedRows(runner, metadata, keys) : new Map<string, ObjectLiteral>();
          for (const [index, values] of valueSets.entries()) {
            const key = keys[index];
            const row = key ? stored.get(entityId(metadata, key) ?? '') : undefined;
            const change = row
              ? { entity: metadata.name, id: entityId(metadata, row), operation: 'insert' as const, fields: snapshotFields(fields.snapshot(row), 'to') }
              : insertChange(metadata, fields, values, key);
            await this.capture.record(runner, change.id === null ? { ...change, partial: true } : change);
          }
        }
        if (commitOwn) await commitOwn();
      })());
    if (hushed) for (const values of valueSets) recordingInsertOf(values, metadata);
    let result: { identifiers?: unknown[]; raw?: unknown } | undefined;
    try {
      if (commitOwn && hushed) {
        result = (await this.qb.watchStatement((answer) => this.write(() => record(answer()?.raw)))).result as typeof result;
      } else {
        result = (await this.write()) as typeof result;
      }
    } finally {
      if (hushed) for (const values of valueSets) recordedInsertOf(values, metadata);
    }
    await record(result?.raw);
    if (result && Array.isArray(result.identifiers) && result.identifiers.length === 0) result.identifiers.push(...keys);
    // The app's raw result as its insert gives it: without the columns asked for here.
    if (recordsHere && added.length && Array.isArray(result?.raw)) result.raw = withoutColumns(result.raw, added);
    return result;
  }

  /**
   * An `INSERT … SELECT` (`valuesFromSelect()`, TypeORM 1), which TypeORM reports to no
   * subscriber (it has no value sets). Its rows are found by what the database says of its
   * statement, and read back as stored, by key, in its transaction:
   * - where the statement returns rows (PostgreSQL; MariaDB 10.5+ where TypeORM or the app
   *   has it return some), it returns their keys too (taken out of the app's result again);
   * - otherwise by the keys the database generated one after the other in the statement:
   *   SQLite's rowids (a rowid table whose rowid the select does not give) and MySQL's and
   *   MariaDB's increment key (one that the select does not give, with
   *   `innodb_autoinc_lock_mode` 0 or 1 and `auto_increment_increment` 1), from the last
   *   (SQLite) or first (MySQL, MariaDB) one and the count of rows;
   * - else, and for an upsert (its rows inserted or updated are not told apart, nor their
   *   values before), one partial `insert` with the count of rows where it is known.
   * At most `maxCriteriaRows` rows are recorded one by one; the rest are counted in a
   * partial `insert`, as are rows found by their key that could not be read.
   */
  private async insertFromSelect(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields): Promise<unknown> {
    const type = this.qb.dataSource.options.type;
    if (this.qb.isUpsert) {
      const result = await this.write();
      await this.capture.record(runner, { entity: metadata.name, id: null, operation: 'insert', fields: {}, partial: true });
      return result;
    }
    const returning =
      this.qb.dataSource.driver.isReturningSqlSupported('insert') &&
      !OWN_RETURNING_FORM.has(type) &&
      (!FIRST_ID_DRIVERS.has(type) || this.qb.returnsRowsAnyway) &&
      (await this.mayReturn(metadata, metadata.primaryColumns));
    if (returning) {
      const { added, restore } = this.qb.returnColumnsFromSelect(metadata.primaryColumns);
      let watched: Awaited<ReturnType<WriteQueryBuilderState['watchStatement']>>;
      try {
        watched = await this.qb.watchStatement(() => this.write());
      } finally {
        restore();
      }
      const result = watched.result as { raw?: unknown } | undefined;
      const returned = Array.isArray(result?.raw) ? (result.raw as unknown[]) : [];
      const keys = returned.map((row) => returnedKey(this.qb.dataSource, metadata, row));
      if (added.length && result && Array.isArray(result.raw)) result.raw = withoutColumns(result.raw, added);
      const known = keys.filter((key): key is ObjectLiteral => key !== undefined).slice(0, this.capture.maxCriteriaRows);
      const stored = await this.storedRows(runner, metadata, known);
      await this.recordSelected(runner, metadata, fields, [...stored.values()], returned.length);
      return result;
    }
    const span = await this.generatedSpan(runner, metadata);
    // SQLite: the rows a trigger inserts into the table take rowids among the statement's,
    // which are then not the span counted back from its last one. Its changes, and its
    // triggers', are counted on the connection around it: a span is trusted only when they
    // are the statement's own (work run meanwhile on the connection counts as well: then
    // not trusted either).
    const countsChanges = span !== undefined && LAST_ID_DRIVERS.has(type);
    const changesBefore = countsChanges ? await this.totalChanges(runner) : undefined;
    const { result, statement } = await this.qb.watchStatement(() => this.write());
    const affected = statement?.affected;
    let ends = span && typeof affected === 'number' ? span(statement!.raw, affected) : undefined;
    if (ends && countsChanges) {
      const changesAfter = await this.totalChanges(runner);
      if (changesBefore === undefined || changesAfter === undefined || changesAfter - changesBefore !== affected) ends = undefined;
    }
    let rows: ObjectLiteral[] = [];
    if (ends && affected! > 0) {
      const last = Math.min(ends.last, ends.first + this.capture.maxCriteriaRows - 1);
      try {
        rows = await this.guarded(runner, () => this.readSpan(runner, metadata, ends.column, ends.first, last));
      } catch (error) {
        if (error instanceof TransactionLost) throw error.cause;
        this.capture.warn(`Could not read back the rows an INSERT … SELECT of ${metadata.name} stored; recording them as partial: ${(error as Error).message}`);
      }
    }
    await this.recordSelected(runner, metadata, fields, rows, affected);
    return result;
  }

  /**
   * How the rows an `INSERT … SELECT` of `metadata` inserts are found after it from what the
   * database reports of its statement (its raw result and its count): the column (`rowid`,
   * or the increment key) whose values it generated one after the other, and the first and
   * last of them; undefined where the database does not number them so.
   */
  private async generatedSpan(
    runner: QueryRunner,
    metadata: EntityMetadata,
  ): Promise<((raw: unknown, affected: number) => { column: string; first: number; last: number } | undefined) | undefined> {
    const type = this.qb.dataSource.options.type;
    const named = this.qb.insertColumns;
    const inserted = (column: ColumnMetadata) => (named.length ? named.includes(column.propertyPath) : column.isInsert && !column.isGenerated);
    const fromNumber = (value: unknown): number | undefined => {
      const number = typeof value === 'bigint' ? Number(value) : value;
      return typeof number === 'number' && Number.isSafeInteger(number) && number > 0 ? number : undefined;
    };
    if (LAST_ID_DRIVERS.has(type)) {
      // Rowids the statement generated: none given by the select (an integer key column is the rowid).
      const driver = this.qb.dataSource.driver;
      if (metadata.withoutRowid || metadata.primaryColumns.some((column) => inserted(column) && /int/i.test(driver.normalizeType(column)))) return undefined;
      return (raw, affected) => {
        const last = fromNumber(raw);
        return last === undefined ? undefined : { column: 'rowid', first: last - affected + 1, last };
      };
    }
    if (!FIRST_ID_DRIVERS.has(type)) return undefined;
    const [key] = metadata.primaryColumns;
    if (metadata.primaryColumns.length !== 1 || !key!.isGenerated || key!.generationStrategy !== 'increment' || inserted(key!)) return undefined;
    if (!(await this.consecutiveIncrements(runner))) return undefined;
    return (raw, affected) => {
      const first = fromNumber((raw as { insertId?: unknown } | null | undefined)?.insertId);
      return first === undefined ? undefined : { column: key!.propertyPath, first, last: first + affected - 1 };
    };
  }

  /** SQLite: the rows inserted, changed or deleted on the connection since it opened, triggers' included (undefined when not told). */
  private async totalChanges(runner: QueryRunner): Promise<number | undefined> {
    try {
      const [row] = (await runner.query('SELECT total_changes() AS n', ownStatement([]))) as Array<{ n: unknown }>;
      const count = typeof row?.n === 'bigint' ? Number(row.n) : row?.n;
      return typeof count === 'number' && Number.isSafeInteger(count) ? count : undefined;
    } catch {
      return undefined;
    }
  }

  /** The rows of `metadata` whose `column` (a property path, or `rowid`) is between `first` and `last`, in the write's transaction. */
  private readSpan(runner: QueryRunner, metadata: EntityMetadata, column: string, first: number, last: number): Promise<ObjectLiteral[]> {
    return this.moduleRead(runner, metadata, 'audit_inserted')
      .withDeleted()
      .where(`audit_inserted.${column} BETWEEN :auditFirst AND :auditLast`, { auditFirst: first, auditLast: last })
      .loadAllRelationIds({ relations: toOneRelations(metadata), disableMixedMap: true })
      .getMany();
  }

  /**
   * Records the rows an `INSERT … SELECT` inserted that were read back, each as an insert,
   * and those it inserted that were not (`inserted` counts them all, when known) as one
   * partial insert with their count.
   */
  private async recordSelected(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields, rows: ObjectLiteral[], inserted: number | undefined): Promise<void> {
    for (const row of rows) await this.recordRow(runner, metadata, fields, row, undefined);
    const rest = inserted === undefined ? undefined : inserted - rows.length;
    if (rest !== undefined && rest <= 0) return;
    await this.capture.record(runner, { entity: metadata.name, id: null, operation: 'insert', fields: {}, partial: true, ...(rest !== undefined ? { count: rest } : {}) });
  }

  /**
   * A plain insert with listeners off, outside TypeORM's persistence with events (a query
   * builder's `callListeners(false)`, `save(…, { listeners: false })`): recorded as its
   * listener records the same insert with listeners on — each value set, as TypeORM
   * completed it (generated key, defaults), under the key TypeORM reports for it.
   */
  private async insertRecorded(metadata: EntityMetadata, fields: TrackedFields): Promise<unknown> {
    const valueSets = this.qb.valueSets();
    const result = (await this.write()) as { identifiers?: unknown[] } | undefined;
    const runner = this.qb.queryRunner;
    for (const [index, values] of valueSets.entries()) {
      const identifier = result?.identifiers?.[index];
      const reported = identifier !== null && typeof identifier === 'object' ? (identifier as ObjectLiteral) : undefined;
      const reportedId = reported ? entityId(metadata, reported) : null;
      const key = reportedId !== null && reportedId !== entityId(metadata, values) ? reported : undefined;
      const change = insertChange(metadata, fields, values, key);
      await this.capture.record(runner, change.id === null ? { ...change, partial: true } : change);
    }
    return result;
  }

  /**
   * Whether the app's role may read `columns` back (RETURNING needs SELECT on them): an app
   * allowed to insert into a table it may not read must not have its insert refused for the
   * module's sake. Asked once per column, on PostgreSQL (the others' RETURNING, or counted
   * ids, need no such right), in the insert's transaction (another connection could wait on it).
   */
  private async mayReturn(metadata: EntityMetadata, columns: readonly ColumnMetadata[]): Promise<boolean> {
    const dataSource = this.qb.dataSource;
    if (dataSource.options.type !== 'postgres') return true;
    let byColumn = returnRights.get(dataSource);
    if (!byColumn) returnRights.set(dataSource, (byColumn = new Map()));
    const table = escapedTable(dataSource, metadata);
    const answers = columns.map((column) => {
      let allowed = byColumn.get(column);
      if (!allowed) {
        allowed = ((this.qb.queryRunner ?? dataSource).query(`SELECT has_column_privilege($1, $2, 'SELECT') AS ok`, ownStatement([table, column.databaseName])) as Promise<Array<{ ok: unknown }>>).then(
          ([row]) => row?.ok === true,
          () => false,
        );
        byColumn.set(column, allowed);
      }
      return allowed;
    });
    return (await Promise.all(answers)).every(Boolean);
  }

  /** The rows stored under `keys`, by id; none when they cannot be read (their values as given are recorded then). */
  private async storedRows(runner: QueryRunner, metadata: EntityMetadata, keys: ReadonlyArray<ObjectLiteral | undefined>): Promise<Map<string, ObjectLiteral>> {
    const known = keys.filter((key): key is ObjectLiteral => key !== undefined);
    try {
      const rows = await this.guarded(runner, () => this.readByIds(runner, known));
      return new Map(rows.map((row) => [entityId(metadata, row) ?? '', row]));
    } catch (error) {
      if (error instanceof TransactionLost) throw error.cause;
      this.capture.warn(`Could not read back the rows an insert of ${metadata.name} stored; recording the values as given: ${(error as Error).message}`);
      return new Map();
    }
  }

  /**
   * Whether the generated increment ids TypeORM counts for an insert without RETURNING are
   * the rows' (other drivers read them from what the database returns). It counts from the
   * one id the database reports — SQLite the last, MySQL and MariaDB the first — which
   * holds when the database generated every row's id, one after the other: SQLite's one
   * writer gives a statement's rows consecutive rowids; MySQL and MariaDB give a multi-row
   * `INSERT … VALUES` consecutive ids with `innodb_autoinc_lock_mode` 0 or 1 (not 2, where
   * concurrent inserts interleave theirs), one apart with `auto_increment_increment` 1.
   */
  private async countedIdsHold(runner: QueryRunner | undefined, generated: readonly ColumnMetadata[], valueSets: readonly ObjectLiteral[]): Promise<boolean> {
    const type = this.qb.dataSource.options.type;
    if (!LAST_ID_DRIVERS.has(type) && !FIRST_ID_DRIVERS.has(type)) return true;
    const increments = generated.filter((column) => column.generationStrategy === 'increment');
    const given = (values: ObjectLiteral) => increments.some((column) => (column.getEntityValue(values) ?? null) !== null);
    if (valueSets.some(given)) return false;
    if (valueSets.length === 1 || LAST_ID_DRIVERS.has(type)) return true;
    return runner ? this.consecutiveIncrements(runner) : false;
  }

  /**
   * MySQL, MariaDB: whether the increment ids a statement generates are consecutive, one
   * apart (`innodb_autoinc_lock_mode` 0 or 1: a multi-row insert takes them all at once;
   * `auto_increment_increment` 1).
   */
  private async consecutiveIncrements(runner: QueryRunner): Promise<boolean> {
    try {
      const [row] = (await runner.query('SELECT @@innodb_autoinc_lock_mode AS lock_mode, @@auto_increment_increment AS step', ownStatement([]))) as Array<{ lock_mode: unknown; step: unknown }>;
      return Number(row?.lock_mode) <= 1 && Number(row?.step) === 1;
    } catch {
      return false;
    }
  }

  /**
   * Runs `body` in the write's transaction, or in one of the module's own when it runs in
   * none. `body` is given, for the module's own, the function committing it (once; it is
   * committed after `body` otherwise): TypeORM opens no transaction for a query builder's
   * write, and calls the app's hooks of its after-event once its statement is committed —
   * they may write its rows through another connection, which would wait on the locks of
   * an open transaction (or not see an uncommitted row). They are called once the records
   * of the write are made and this transaction is committed.
   */
  private async inTransaction(body: (runner: QueryRunner, commitOwn: (() => Promise<void>) | undefined) => Promise<unknown>): Promise<unknown> {
    const ownRunner = !this.qb.queryRunner;
    const runner = this.qb.queryRunner ?? this.qb.dataSource.createQueryRunner();
    const ownTransaction = !runner.isTransactionActive;
    if (ownRunner) this.qb.setQueryRunner(runner);
    let starting: Promise<void> | undefined;
    let started = false;
    // On a runner the app holds (not SQLite's one connection), the transaction is opened in
    // the runner's turn: the app may send other statements on it meanwhile (see runner-turn).
    const token = {};
    let giveBack: (() => void) | undefined;
    // Before values and the write share one transaction: nothing changes in between, and
    // fallback events commit (or roll back) with the write. `body` starts it (`this.begin`)
    // once the app's hooks of the write's before-event are done (see write) — unless one is
    // open on the runner by then (SQLite's one runner, shared by writes made at once).
    this.begin = () =>
      (starting ??= (async () => {
        if (!ownTransaction) return;
        if (!ownRunner && !isSqlite(this.qb.dataSource)) giveBack = await takeTurn(runner, token);
        if (runner.isTransactionActive) return giveBack?.();
        started = true;
        await runner.startTransaction();
      })());
    let committing: Promise<void> | undefined;
    let committed = false;
    const commit = () =>
      (committing ??= this.begin!().then(async () => {
        if (!started) return;
        try {
          await runner.commitTransaction();
          committed = true;
        } finally {
          giveBack?.();
        }
      }));
    // The module's statements around the write (its commit, its rollback) are the turn's too.
    return runAsTurnHolder(token, async () => {
      try {
        const result = await body(runner, ownTransaction ? commit : undefined);
        if (ownTransaction) await commit();
        return result;
      } catch (error) {
        await starting?.catch(() => undefined);
        if (started && !committed && runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
        throw error;
      } finally {
        giveBack?.();
        if (ownRunner) {
          this.qb.setQueryRunner(undefined);
          await runner.release();
        }
      }
    });
  }

  private async captureAround(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields, commitOwn: (() => Promise<void>) | undefined): Promise<unknown> {
    // An upsert's (or an ignoring insert's) value sets are recorded here, not by the insert listener, while it runs.
    const valueSets = this.kind === 'insert' ? this.qb.valueSets() : [];
    for (const values of valueSets) recordingInsertOf(values, metadata);
    try {
      return await this.captureWrite(runner, metadata, fields, commitOwn);
    } finally {
      for (const values of valueSets) recordedInsertOf(values, metadata);
    }
  }

  /**
   * Captures a write by criteria: its rows read before it, and read again (or taken as
   * deleted) once its statement is done, before the app's hooks of its after-event run.
   * With `commitOwn` (the module's own transaction around a write the app made in none),
   * the records are made and that transaction committed then, before those hooks, as
   * TypeORM has them run after a statement it commits at once.
   */
  private async captureWrite(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields, commitOwn: (() => Promise<void>) | undefined): Promise<unknown> {
    const bound = this.capture.maxCriteriaRows;
    let before: ObjectLiteral[] | undefined;
    // An insert's rows are matched on its values as given: TypeORM may rewrite ids in them after the insert.
    let targets: InsertTargets | undefined;
    // What the database deletes or changes with the rows, read before they go.
    let cascade: PendingChange[] = [];
    // The rows are read (and locked) in the write's transaction just before its statement,
    // once the app's hooks of its before-event are done (see write).
    const prepare = async () => {
      await this.begin?.();
      ({ before, targets, cascade } = await this.readBefore(runner, metadata, bound));
    };
    // The rows are read back and recorded once the statement is done, before the app's hooks
    // of its after-event run: what those write is a later change of the rows, recorded after.
    let written: Promise<number | undefined> | undefined;
    const recordWritten = () => (written ??= this.recordWritten(runner, metadata, fields, before, targets, cascade));
    if (!commitOwn) {
      const result = await this.write(async () => {
        await recordWritten();
      }, prepare);
      await this.recordUncounted(runner, metadata, fields, before, targets, await recordWritten(), (result as { affected?: number } | undefined)?.affected);
      return result;
    }
    // Everything is recorded, and committed, before the hooks: the count of rows the statement
    // affected is taken from what the database said of it.
    let finished: Promise<void> | undefined;
    const finish = (affected: number | undefined) =>
      (finished ??= (async () => {
        await this.recordUncounted(runner, metadata, fields, before, targets, await recordWritten(), affected);
        await commitOwn();
      })());
    const { result, statement } = await this.qb.watchStatement((answer) => this.write(() => finish(answer()?.affected), prepare));
    await finish(statement?.affected ?? (result as { affected?: number } | undefined)?.affected);
    return result;
  }

  /**
   * The rows a write by criteria will touch, read (and locked) before its statement — for
   * an insert, those its value sets may hit (`targets`) — and what a delete cascades to;
   * `before` is left out when they cannot be read (the write is then recorded as partial).
   */
  private async readBefore(
    runner: QueryRunner,
    metadata: EntityMetadata,
    bound: number,
  ): Promise<{ before: ObjectLiteral[] | undefined; targets: InsertTargets | undefined; cascade: PendingChange[] }> {
    let before: ObjectLiteral[] | undefined;
    let targets: InsertTargets | undefined;
    try {
      if (this.kind === 'insert') targets = this.insertTargets(metadata);
      const read = (): Promise<ObjectLiteral[]> => (targets ? this.readInsertTargets(runner, metadata, targets.lookups) : this.readMatching(runner, bound + 1));
      before = this.fields?.hidden.length
        ? (await readWithHidden(runner, metadata, this.fields.hidden, () => read(), (message) => this.capture.warn(message))).value
        : await this.guarded(runner, read);
    } catch (error) {
      if (error instanceof TransactionLost) throw error.cause;
      this.capture.warn(`Could not read the rows a ${this.kind} of ${metadata.name} affects; recording it as partial: ${(error as Error).message}`);
    }
    let cascade: PendingChange[] = [];
    if (this.kind === 'delete' && before?.length && deleteEffectsOf(this.qb.dataSource, metadata).dependents.length) {
      try {
        cascade = await this.guarded(runner, () => DeleteCascade.read(this.capture, this.qb.dataSource, runner, metadata, before!.slice(0, bound), false));
      } catch (error) {
        if (error instanceof TransactionLost) throw error.cause;
        this.capture.warn(`Could not read the rows a delete of ${metadata.name} cascades to: ${(error as Error).message}`);
      }
    }
    return { before, targets, cascade };
  }

  /**
   * Records, once a write by criteria's rows are recorded (`recorded` of them one by one),
   * those it wrote that were not: all of them when they could not be read before it, as a
   * partial change with the count the database gave (`affected`), or those past the bound.
   */
  private async recordUncounted(
    runner: QueryRunner,
    metadata: EntityMetadata,
    fields: TrackedFields,
    before: ObjectLiteral[] | undefined,
    targets: InsertTargets | undefined,
    recorded: number | undefined,
    affected: number | undefined,
  ): Promise<void> {
    if (!before) return this.recordPartial(runner, metadata, fields, affected);
    if (targets || recorded === undefined) return;
    const bound = this.capture.maxCriteriaRows;
    const known = before.slice(0, bound);
    // Rows the write changed that were not recorded one by one: past the bound, or (where
    // the read cannot lock rows that did not exist yet) matching rows another connection
    // committed between the read and the write. Counted whenever the database says more.
    const unrecorded = affected === undefined ? (recorded < known.length ? known.length - recorded : undefined) : affected - recorded;
    if (unrecorded !== undefined && unrecorded > 0) await this.recordPartial(runner, metadata, fields, unrecorded);
    else if (before.length > bound) await this.recordPartial(runner, metadata, fields, undefined);
  }

  /**
   * A plain insert with its listeners, by a query builder (`repository.insert()`) the app
   * runs in no transaction, in the module's own (`commitOwn` commits it): its value sets,
   * as TypeORM completed them, are recorded here as its listener records them, and the
   * transaction committed, before the app's hooks of its after-event run (as TypeORM has
   * them run after a statement it commits at once).
   */
  private async insertBeforeHooks(metadata: EntityMetadata, fields: TrackedFields, commitOwn: () => Promise<void>): Promise<unknown> {
    const valueSets = this.qb.valueSets();
    const runner = this.qb.queryRunner;
    for (const values of valueSets) recordingInsertOf(values, metadata);
    let finished: Promise<void> | undefined;
    const finish = () =>
      (finished ??= (async () => {
        for (const values of valueSets) {
          const change = insertChange(metadata, fields, values, undefined);
          await this.capture.record(runner, change.id === null ? { ...change, partial: true } : change);
        }
        await commitOwn();
      })());
    try {
      const result = await this.write(finish);
      await finish();
      return result;
    } finally {
      for (const values of valueSets) recordedInsertOf(values, metadata);
    }
  }

  /**
   * Records the rows a write by criteria wrote, once its statement is done: those it
   * inserted or updated (an upsert's, by `targets`), read again, or those it deleted, and
   * what the database deleted or changed with them (`cascade`). Returns how many of the rows
   * read before it were recorded one by one (undefined for an upsert, or when they could not
   * be read).
   */
  private async recordWritten(
    runner: QueryRunner,
    metadata: EntityMetadata,
    fields: TrackedFields,
    before: ObjectLiteral[] | undefined,
    targets: InsertTargets | undefined,
    cascade: PendingChange[],
  ): Promise<number | undefined> {
    if (!before) return undefined;
    if (targets) {
      await this.recordInsert(runner, metadata, targets, before);
      return undefined;
    }
    const known = before.slice(0, this.capture.maxCriteriaRows);
    // The rows recorded one by one (fewer than those read when an update moved keys to values not known here).
    let recorded = known.length;
    const operation = this.operation();
    if (this.kind === 'delete') {
      for (const row of known) {
        const of = this.entityOf(row, fields);
        if (!of) continue;
        await this.capture.record(runner, {
          entity: of.metadata.name,
          id: entityId(metadata, row),
          operation,
          fields: snapshotFields(of.fields.snapshot(row), 'from'),
        });
      }
    } else {
      // An update that sets the primary key moves its rows: they are read, and recorded, under
      // their new key (those moved to a value the database computes cannot be found again).
      const moves = this.kind === 'update' ? this.keyMoves(metadata) : undefined;
      const keyOf = (row: ObjectLiteral): ObjectLiteral => (moves ? movedKey(metadata, row, moves) : row);
      const hasKey = (key: ObjectLiteral): boolean => metadata.primaryColumns.every((column) => column.getEntityValue(key) != null);
      const after = await this.readByIds(runner, moves ? known.map(keyOf).filter(hasKey) : known);
      const beforeById = new Map(known.map((row) => [entityId(metadata, keyOf(row)), row]));
      if (moves) recorded = after.length;
      for (const row of after) {
        const of = this.entityOf(row, fields);
        if (!of) continue;
        const id = entityId(metadata, row);
        const previous = beforeById.get(id);
        const now = of.fields.snapshot(row);
        await this.capture.record(runner, {
          entity: of.metadata.name,
          id,
          operation: previous ? operation : 'insert',
          fields: previous ? diffSnapshots(of.fields.snapshot(previous), now) : snapshotFields(now, 'to'),
        });
      }
    }
    await this.capture.recordAll(runner, cascade);
    return recorded;
  }

  /**
   * The primary key columns an update sets, with the values it sets them to; undefined when
   * it sets none. A value the database computes (a function: an SQL expression) is `undefined`:
   * the rows it moves cannot be found again, and are recorded as a partial change.
   */
  private keyMoves(metadata: EntityMetadata): Array<[ColumnMetadata, unknown]> | undefined {
    const values = this.qb.valuesSet;
    if (!values || Array.isArray(values)) return undefined;
    const moves: Array<[ColumnMetadata, unknown]> = [];
    for (const column of metadata.primaryColumns) {
      const value = column.getEntityValue(values) as unknown;
      if (value !== undefined) moves.push([column, typeof value === 'function' ? undefined : value]);
    }
    return moves.length ? moves : undefined;
  }

  /**
   * Records an upsert or an insert that ignores conflicts: the rows its value sets' keys
   * find after it ran that were not there before are inserts; those that were are updates
   * (an ignored value set leaves its row as it was: no change).
   */
  private async recordInsert(runner: QueryRunner, metadata: EntityMetadata, targets: InsertTargets, before: ObjectLiteral[]): Promise<void> {
    const bound = this.capture.maxCriteriaRows;
    const fields = this.fields!;
    // Where the insert returns the rows it wrote (RETURNING), TypeORM puts their ids into the
    // value sets by position, which need not be theirs when a row was skipped: only the set
    // of those ids is right, and it is all that is read.
    const returning = this.qb.dataSource.driver.isReturningSqlSupported('insert');
    const after = await this.readInsertTargets(runner, metadata, [...targets.lookups, ...(returning ? this.returnedIds(metadata, this.qb.valueSets()) : [])]);
    const beforeById = new Map(before.map((row) => [entityId(metadata, row), row]));
    const known = new Set(before.slice(0, bound));
    let inserted = 0;
    for (const row of after) {
      const id = entityId(metadata, row);
      const previous = beforeById.get(id);
      if (!previous) inserted++;
      // Past the bound (counted below), or left as it was by an ignored value set.
      else if (!known.has(previous) || this.qb.ignoresConflicts) continue;
      await this.recordRow(runner, metadata, fields, row, previous);
    }
    if (!returning && targets.keyless.length) {
      // Without RETURNING, TypeORM counts the ids of value sets with no key value from the last
      // id the database generated: right only when no value set was skipped or turned into an
      // update. An upsert that found no row is sure of it; an insert that ignores conflicts is
      // not (SQLite skips a row for a NOT NULL or CHECK error too, MySQL for a foreign key).
      const ignores = this.qb.ignoresConflicts;
      if (!ignores && before.length === 0 && inserted === targets.keyed) {
        for (const row of await this.readInsertTargets(runner, metadata, this.returnedIds(metadata, targets.keyless))) {
          await this.recordRow(runner, metadata, fields, row, undefined);
        }
      } else {
        // Each such value set of an upsert is an insert; of an insert that ignores conflicts, at most one.
        await this.capture.record(runner, {
          entity: metadata.name,
          id: null,
          operation: 'insert',
          fields: {},
          partial: true,
          ...(ignores ? {} : { count: targets.keyless.length }),
        });
      }
    }
    // An upsert's affected count is not a count of rows (MySQL counts an update twice).
    if (before.length > bound) await this.recordPartial(runner, metadata, fields, undefined);
  }

  /** Records a row an insert wrote: an insert, or an update of `previous`. */
  private async recordRow(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields, row: ObjectLiteral, previous: ObjectLiteral | undefined): Promise<void> {
    const of = this.entityOf(row, fields);
    if (!of) return;
    const now = of.fields.snapshot(row);
    await this.capture.record(runner, {
      entity: of.metadata.name,
      id: entityId(metadata, row),
      operation: previous ? 'update' : 'insert',
      fields: previous ? diffSnapshots(of.fields.snapshot(previous), now) : snapshotFields(now, 'to'),
    });
  }

  /**
   * The entity a row read through the write's entity is of, with its followed fields
   * (undefined when it is not captured). Under single-table inheritance TypeORM loads a row
   * of the base entity as the child entity its discriminator names: it is recorded as that.
   */
  private entityOf(row: ObjectLiteral, fields: TrackedFields): { metadata: EntityMetadata; fields: TrackedFields } | undefined {
    const metadata = this.metadata!;
    const child = metadata.childEntityMetadatas.length ? metadata.childEntityMetadatas.find((candidate) => candidate.target === row.constructor) : undefined;
    if (!child) return { metadata, fields };
    const childFields = this.capture.trackedFields(child);
    return childFields ? { metadata: child, fields: childFields } : undefined;
  }

  /** Links added (insert) or removed (delete) in a junction table, recorded on the owning entity. */
  private async captureJunction(runner: QueryRunner, junction: EntityMetadata, relation: RelationMetadata): Promise<unknown> {
    const side = this.kind === 'insert' ? 'added' : 'removed';
    if (this.kind === 'insert' && this.qb.insertsFromSelect) {
      // Links inserted by a select: the database says how many, not which.
      const { result, statement } = await this.qb.watchStatement(() => this.write());
      const count = statement?.affected;
      if (count !== 0) {
        await this.capture.record(runner, { entity: relation.entityMetadata.name, id: null, operation: 'update', fields: {}, partial: true, ...(count !== undefined ? { count } : {}) });
      }
      return result;
    }
    let found: Awaited<ReturnType<typeof junctionLinks>> | undefined;
    try {
      const rows = this.kind === 'insert' ? this.qb.valueSets() : await this.guarded(runner, () => this.readJunctionRows(runner, junction));
      found = await this.guarded(runner, () => junctionLinks(runner, relation, rows, junctionValue));
    } catch (error) {
      if (error instanceof TransactionLost) throw error.cause;
      const write = this.kind === 'insert' ? 'an insert adds' : 'a delete removes';
      this.capture.warn(`Could not read the ${relation.entityMetadata.name}.${relation.propertyPath} links ${write}: ${(error as Error).message}`);
    }
    const result = await this.write();
    if (!found || found.unknown) {
      await this.capture.record(runner, { entity: relation.entityMetadata.name, id: null, operation: 'update', fields: {}, partial: true, ...(found ? { count: found.unknown } : {}) });
    }
    for (const { entity, owner, related } of found?.links ?? []) {
      if (!this.capture.trackedFields(entity)) continue;
      await this.capture.record(runner, {
        entity: entity.name,
        id: owner,
        operation: 'update',
        fields: { [relation.propertyPath]: side === 'added' ? { added: [related], removed: [] } : { added: [], removed: [related] } },
      });
    }
    return result;
  }

  private operation(): AuditChangeOperation {
    // A soft delete or restore is an update of the delete-date column.
    return this.kind === 'delete' ? 'delete' : 'update';
  }

  /**
   * A change known only in part: the entity, the operation, the values set and (when known)
   * how many rows, no ids. The values are read as a full capture reads an entity's: a to-one
   * relation set as an entity is its id, an embedded set as an object is one field per
   * column (`wallet.code`), excluded fields are left out, and a value the database computes
   * (a function giving SQL) is not known.
   */
  private async recordPartial(runner: QueryRunner, metadata: EntityMetadata, tracked: TrackedFields, count: number | undefined): Promise<void> {
    if (count !== undefined && count <= 0) return;
    const values = Array.isArray(this.qb.valuesSet) ? undefined : this.qb.valuesSet;
    const columns: ColumnMetadata[] = [];
    for (const [name, value] of Object.entries(values ?? {})) {
      const embedded = value !== null && typeof value === 'object' ? metadata.findEmbeddedWithPropertyPath(name) : undefined;
      for (const column of embedded ? embedded.columnsFromTree : metadata.findColumnsWithPropertyPath(name)) {
        if (tracked.columns.includes(column) && typeof column.getEntityValue(values!) !== 'function') columns.push(column);
      }
    }
    const fields: Record<string, { to: unknown }> = {};
    for (const [name, value] of Object.entries(values ? tracked.snapshot(values, columns) : {})) fields[name] = { to: value };
    await this.capture.record(runner, {
      entity: metadata.name,
      id: null,
      operation: this.operation(),
      fields,
      partial: true,
      ...(count !== undefined ? { count } : {}),
    });
  }

  /**
   * Runs one of the module's reads in the write's transaction. Where a failed statement
   * aborts the transaction (PostgreSQL), in a savepoint rolled back to when the read fails:
   * the read's error is thrown, the transaction goes on. When even that fails, the
   * transaction is gone: {@link TransactionLost}, which the write does not outlive.
   */
  private guarded<T>(runner: QueryRunner, read: () => Promise<T>): Promise<T> {
    return readInTransaction(runner, read);
  }

  /**
   * A SELECT with the write's own WHERE clause, in its transaction. The write's statement
   * names its table without an alias (`UPDATE rv_tag … WHERE rv_tag.name = …` is valid SQL
   * TypeORM sends as written): the probe reads the table under its own name, so that a
   * condition naming it reads the same. It reads every followed column, `select: false` ones too.
   */
  private probe(runner: QueryRunner): SelectQueryBuilder<ObjectLiteral> {
    const metadata = this.metadata!;
    const probe = this.moduleRead(runner, metadata, metadata.tableName);
    this.qb.copyConditionsTo(probe);
    return probe.withDeleted().loadAllRelationIds({ relations: toOneRelations(metadata), disableMixedMap: true });
  }

  /** Junction rows matching the write's WHERE clause (raw: a junction has no class to hydrate). */
  private async readJunctionRows(runner: QueryRunner, junction: EntityMetadata): Promise<ObjectLiteral[]> {
    const probe = this.probe(runner);
    const escape = (name: string) => this.qb.dataSource.driver.escape(name);
    probe.select([]);
    junction.columns.forEach((column, i) => probe.addSelect(`${escape(probe.alias)}.${escape(column.databaseName)}`, `c${i}`));
    const raw = await probe.getRawMany<Record<string, unknown>>();
    return raw.map((row) => Object.fromEntries(junction.columns.map((column, i) => [column.propertyName, row[`c${i}`]])));
  }

  /**
   * The rows the write will touch, locked (`FOR UPDATE`) until its transaction ends where the
   * database can lock rows: no other connection changes or deletes them before the write.
   * SQLite needs no lock (one writer at a time: a concurrent write fails as busy).
   */
  private readMatching(runner: QueryRunner, limit: number): Promise<ObjectLiteral[]> {
    const probe = this.probe(runner).limit(limit);
    if (LOCKING_DRIVERS.has(this.qb.dataSource.options.type)) probe.setLock('pessimistic_write');
    return probe.getMany();
  }

  private async readByIds(runner: QueryRunner, rows: ObjectLiteral[]): Promise<ObjectLiteral[]> {
    if (rows.length === 0) return [];
    const metadata = this.metadata!;
    return this.moduleRead(runner, metadata, 'audit_reread')
      .withDeleted()
      .whereInIds(rows.map((row) => metadata.getEntityIdMap(row)))
      .loadAllRelationIds({ relations: toOneRelations(metadata), disableMixedMap: true })
      .getMany();
  }

  /**
   * Where-clauses for the rows an insert may hit, per value set: by its upsert's conflict
   * target, its primary key and every unique key of the entity (MySQL and MariaDB's
   * `ON DUPLICATE KEY UPDATE`, and an insert that ignores conflicts, act on a collision with
   * any of them) — each key whose values the value set gives. A value set that gives none
   * can only be inserted (`keyless`).
   */
  private insertTargets(metadata: EntityMetadata): InsertTargets {
    const conflict = this.qb.conflict;
    const names = conflict === undefined ? [] : Array.isArray(conflict) ? conflict : conflict.split(',').map((n) => n.trim().replace(/["`]/g, ''));
    const target = names.map((name) => metadata.findColumnWithDatabaseName(name) ?? metadata.findColumnWithPropertyPath(name));
    if (target.some((column) => !column)) throw new Error(`unknown conflict target ${JSON.stringify(conflict)}`);
    const keys = [...(target.length ? [target as ColumnMetadata[]] : []), ...uniqueKeysOf(metadata)];
    const valueSets = this.qb.valueSets();
    const lookups: ObjectLiteral[] = [];
    const keyless: ObjectLiteral[] = [];
    for (const values of valueSets) {
      const found = keys.map((columns) => lookupOf(columns, values)).filter((lookup): lookup is ObjectLiteral => lookup !== undefined);
      if (found.length) lookups.push(...found);
      else keyless.push(values);
    }
    return { lookups, keyless, keyed: valueSets.length - keyless.length };
  }

  private returnedIds(metadata: EntityMetadata, valueSets: ObjectLiteral[]): ObjectLiteral[] {
    return valueSets
      .map((values) => metadata.getEntityIdMap(values))
      .filter((id): id is ObjectLiteral => id !== undefined && Object.values(id).every((v) => v !== undefined && v !== null));
  }

  private async readInsertTargets(runner: QueryRunner, metadata: EntityMetadata, lookups: ObjectLiteral[]): Promise<ObjectLiteral[]> {
    if (lookups.length === 0) return [];
    return this.moduleRead(runner, metadata, 'audit_upserted')
      .setFindOptions({ where: lookups, withDeleted: true, loadRelationIds: { relations: toOneRelations(metadata), disableMixedMap: true } })
      .getMany();
  }

  /**
   * A read of `metadata`'s rows by the module, on `runner` (in the write's transaction),
   * under `alias`, with every followed column (`select: false` ones too). Not the app's load:
   * its afterLoad hooks are not called for the rows read.
   */
  private moduleRead(runner: QueryRunner, metadata: EntityMetadata, alias: string): SelectQueryBuilder<ObjectLiteral> {
    const query = runner.manager.createQueryBuilder(metadata.target, alias).callListeners(false);
    if (this.fields) selectHidden(query, readableHidden(metadata, this.fields.hidden));
    return query;
  }
}

/** The property paths of `metadata`'s relations whose key the row holds (many-to-one, owning one-to-one). */
function toOneRelations(metadata: EntityMetadata): string[] {
  return metadata.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => r.propertyPath);
}

/** The key of a row an insert returned (RETURNING), as the driver reads it; undefined when it lacks a key column's value. */
function returnedKey(dataSource: DataSource, metadata: EntityMetadata, row: unknown): ObjectLiteral | undefined {
  if (row === null || typeof row !== 'object') return undefined;
  let map: ObjectLiteral | undefined;
  try {
    map = dataSource.driver.createGeneratedMap(metadata, row as ObjectLiteral, 0, 1);
  } catch {
    return undefined;
  }
  const key = map ? metadata.getEntityIdMap(map) : undefined;
  return key && metadata.primaryColumns.every((column) => (column.getEntityValue(key) ?? null) !== null) ? key : undefined;
}

/** The key of `row` once an update moved it (`moves`: the key columns it sets, and their new values). */
function movedKey(metadata: EntityMetadata, row: ObjectLiteral, moves: Array<[ColumnMetadata, unknown]>): ObjectLiteral {
  const key: ObjectLiteral = {};
  for (const column of metadata.primaryColumns) {
    const move = moves.find(([moved]) => moved === column);
    Object.assign(key, column.createValueMap(move ? move[1] : column.getEntityValue(row)));
  }
  return key;
}

/** The rows an insert may hit, found by the keys its value sets give. */
interface InsertTargets {
  /** Where-clauses, one per key a value set gives. */
  lookups: ObjectLiteral[];
  /** The value sets that give no key's values. */
  keyless: ObjectLiteral[];
  /** How many value sets give one at least. */
  keyed: number;
}

const uniqueKeys = new WeakMap<EntityMetadata, ColumnMetadata[][]>();

/** The primary key and the unique keys (constraints and indices) of an entity, computed once. */
function uniqueKeysOf(metadata: EntityMetadata): ColumnMetadata[][] {
  let keys = uniqueKeys.get(metadata);
  if (!keys) {
    keys = [metadata.primaryColumns, ...metadata.uniques.map((unique) => unique.columns), ...metadata.indices.filter((index) => index.isUnique).map((index) => index.columns)].filter(
      (columns) => columns.length > 0,
    );
    uniqueKeys.set(metadata, keys);
  }
  return keys;
}

/** A where-clause finding the row `values` collides with on `columns`, or undefined when it does not give them all (NULL collides with nothing). */
function lookupOf(columns: readonly ColumnMetadata[], values: ObjectLiteral): ObjectLiteral | undefined {
  const lookup: ObjectLiteral = {};
  for (const column of columns) {
    const value = column.getEntityValue(values) as unknown;
    if (value === undefined || value === null || typeof value === 'function') return undefined;
    mergeInto(lookup, column.createValueMap(value));
  }
  return lookup;
}

/** Merges `source` (a column's value map: nested for embeddeds and relations) into `target`. */
function mergeInto(target: ObjectLiteral, source: ObjectLiteral): void {
  for (const [name, value] of Object.entries(source)) {
    if (isPlainObject(value) && isPlainObject(target[name])) mergeInto(target[name] as ObjectLiteral, value);
    else target[name] = value;
  }
}

/** An object literal (not a `Date`, a buffer, an array or a class instance holding a column's value). */
const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
