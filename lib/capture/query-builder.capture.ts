import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource, EntityMetadata, ObjectLiteral, QueryBuilder, QueryRunner, SelectQueryBuilder } from 'typeorm';
import { toJsonSafe } from '../events/json-safe.js';
import type { AuditChangeOperation } from '../interfaces/audit-event.interface.js';
import type { ChangeCapture } from './change-capture.js';
import { entityId } from './entity-identity.js';
import { diffSnapshots, snapshotFields, type Snapshot, type TrackedFields } from './entity-snapshot.js';

type Kind = 'update' | 'delete' | 'soft-delete' | 'insert';

interface ExpressionMap {
  queryType: string;
  callListeners: boolean;
  mainAlias?: { hasMetadata: boolean; metadata: EntityMetadata };
  valuesSet?: ObjectLiteral | ObjectLiteral[];
  onUpdate?: { conflict?: string | string[] };
  insertFromSelect?: unknown;
}

/** The parts of TypeORM's write query builders this module reads (stable across 0.3 and 1.x). */
interface WriteQueryBuilder {
  readonly connection: DataSource;
  queryRunner?: QueryRunner;
  expressionMap: ExpressionMap;
  alias: string;
  execute(): Promise<unknown>;
  setQueryRunner(runner: QueryRunner | undefined): unknown;
  getValueSets?(): ObjectLiteral[];
}

const PATCHED = Symbol.for('nestjs-system-audit:patched-execute');
const captures = new WeakMap<DataSource, ChangeCapture>();
const insideWrite = new AsyncLocalStorage<true>();
/** Value objects of upserts, recorded here rather than by the insert listener. */
export const upsertedValues = new WeakSet<object>();

/** True while a TypeORM query builder (or TypeORM's own persistence) runs: its SQL is not "raw". */
export const isInsideQueryBuilder = (): boolean => insideWrite.getStore() === true;

/**
 * Hooks the `execute` of TypeORM's update, delete, soft-delete/restore and insert query
 * builders of this data source's TypeORM, so that writes by criteria are captured with
 * their affected ids and real before values. Installed once per TypeORM copy; inert for
 * data sources without a capture.
 */
export function attachQueryBuilderCapture(dataSource: DataSource, capture: ChangeCapture): void {
  captures.set(dataSource, capture);
  const root = dataSource.createQueryBuilder() as unknown as QueryBuilder<ObjectLiteral>;
  const builders: Array<[Kind, object]> = [
    ['update', root.update()],
    ['delete', root.delete()],
    ['soft-delete', root.softDelete()],
    ['insert', root.insert()],
  ];
  for (const [kind, builder] of builders) {
    const proto = Object.getPrototypeOf(builder) as { execute: ((this: WriteQueryBuilder) => Promise<unknown>) & { [PATCHED]?: true } };
    if (proto.execute[PATCHED]) continue;
    const original = proto.execute;
    const execute = async function (this: WriteQueryBuilder): Promise<unknown> {
      const active = captures.get(this.connection);
      if (!active || isInsideQueryBuilder()) return insideWrite.run(true, () => original.call(this));
      return new CriteriaWrite(active, this, kind, () => insideWrite.run(true, () => original.call(this))).run();
    } as typeof proto.execute;
    execute[PATCHED] = true;
    proto.execute = execute;
  }
}

export function detachQueryBuilderCapture(dataSource: DataSource, capture: ChangeCapture): void {
  if (captures.get(dataSource) === capture) captures.delete(dataSource);
}

/** One write by criteria: reads what it will touch, runs it, reads the result, records the difference. */
class CriteriaWrite {
  private readonly map: ExpressionMap;
  private readonly metadata?: EntityMetadata;
  private readonly fields: TrackedFields | null;

  constructor(
    private readonly capture: ChangeCapture,
    private readonly qb: WriteQueryBuilder,
    private readonly kind: Kind,
    private readonly write: () => Promise<unknown>,
  ) {
    this.map = qb.expressionMap;
    this.metadata = this.map.mainAlias?.hasMetadata ? this.map.mainAlias.metadata : undefined;
    this.fields = this.metadata ? capture.trackedFields(this.metadata) : null;
  }

  async run(): Promise<unknown> {
    // TypeORM's own persistence (save/remove/…) turns listeners off and reports
    // through the subscriber; so do plain inserts. Those are not writes by criteria.
    const byCriteria =
      this.map.callListeners &&
      (this.kind !== 'insert' || (this.map.onUpdate !== undefined && !this.map.insertFromSelect));
    if (!this.metadata || !this.fields || !byCriteria) return this.write();

    const ownRunner = !this.qb.queryRunner;
    const runner = this.qb.queryRunner ?? this.qb.connection.createQueryRunner();
    const ownTransaction = !runner.isTransactionActive;
    if (ownRunner) this.qb.setQueryRunner(runner);
    try {
      // Before values and the write share one transaction: nothing changes in between,
      // and fallback events commit (or roll back) with the write.
      if (ownTransaction) await runner.startTransaction();
      const result = await this.captureAround(runner, this.metadata, this.fields);
      if (ownTransaction) await runner.commitTransaction();
      return result;
    } catch (error) {
      if (ownTransaction && runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      throw error;
    } finally {
      if (ownRunner) {
        this.qb.setQueryRunner(undefined);
        await runner.release();
      }
    }
  }

  private async captureAround(runner: QueryRunner, metadata: EntityMetadata, fields: TrackedFields): Promise<unknown> {
    const bound = this.capture.maxCriteriaRows;
    let before: ObjectLiteral[] | undefined;
    try {
      before = this.kind === 'insert' ? await this.readUpsertTargets(runner, metadata) : await this.readMatching(runner, bound + 1);
    } catch (error) {
      this.capture.warn(`Could not read the rows a ${this.kind} of ${metadata.name} affects; recording it as partial: ${(error as Error).message}`);
    }
    const result = await this.write();
    const affected = (result as { affected?: number } | undefined)?.affected;
    if (!before) {
      await this.recordPartial(runner, metadata, affected);
      return result;
    }
    const known = before.slice(0, bound);
    const operation = this.operation();
    if (this.kind === 'delete') {
      for (const row of known) {
        await this.capture.record(runner, {
          entity: metadata.name,
          id: entityId(metadata, row),
          operation,
          fields: snapshotFields(fields.snapshot(row), 'from'),
        });
      }
    } else {
      const after = this.kind === 'insert' ? await this.readUpsertTargets(runner, metadata) : await this.readByIds(runner, known);
      const beforeById = new Map(known.map((row) => [entityId(metadata, row), fields.snapshot(row)]));
      for (const row of after) {
        const id = entityId(metadata, row);
        const previous: Snapshot | undefined = beforeById.get(id);
        const now = fields.snapshot(row);
        await this.capture.record(runner, {
          entity: metadata.name,
          id,
          operation: previous ? operation : 'insert',
          fields: previous ? diffSnapshots(previous, now) : snapshotFields(now, 'to'),
        });
      }
    }
    if (before.length > bound) await this.recordPartial(runner, metadata, affected === undefined ? undefined : affected - bound);
    return result;
  }

  private operation(): AuditChangeOperation {
    if (this.kind === 'delete') return 'delete';
    if (this.kind === 'soft-delete') return this.map.queryType === 'restore' ? 'update' : 'delete';
    return 'update';
  }

  /** A change known only in part: the entity, the operation and the values set, no ids. */
  private async recordPartial(runner: QueryRunner, metadata: EntityMetadata, affected: number | undefined): Promise<void> {
    if (affected === 0) return;
    const fields: Record<string, { from?: unknown; to: unknown }> = {};
    const values = Array.isArray(this.map.valuesSet) ? undefined : this.map.valuesSet;
    for (const [name, value] of Object.entries(values ?? {})) {
      if (typeof value !== 'function') fields[name] = { to: toJsonSafe(value) };
    }
    await this.capture.record(runner, { entity: metadata.name, id: null, operation: this.operation(), fields, partial: true });
  }

  /** A SELECT with the write's own WHERE clause, in its transaction. */
  private probe(runner: QueryRunner): SelectQueryBuilder<ObjectLiteral> {
    const Select = this.qb.connection.createQueryBuilder().constructor as new (qb: unknown) => SelectQueryBuilder<ObjectLiteral>;
    const probe = new Select(this.qb);
    probe.setQueryRunner(runner);
    const toOne = this.metadata!.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => r.propertyPath);
    return probe
      .select(this.qb.alias)
      .withDeleted()
      .loadAllRelationIds({ relations: toOne, disableMixedMap: true });
  }

  private readMatching(runner: QueryRunner, limit: number): Promise<ObjectLiteral[]> {
    return this.probe(runner).limit(limit).getMany();
  }

  private async readByIds(runner: QueryRunner, rows: ObjectLiteral[]): Promise<ObjectLiteral[]> {
    if (rows.length === 0) return [];
    const metadata = this.metadata!;
    const toOne = metadata.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => r.propertyPath);
    return runner.manager
      .createQueryBuilder(metadata.target, 'audit_reread')
      .withDeleted()
      .whereInIds(rows.map((row) => metadata.getEntityIdMap(row)))
      .loadAllRelationIds({ relations: toOne, disableMixedMap: true })
      .getMany();
  }

  /** The rows an upsert may hit: matched on its conflict columns (or the primary key). */
  private async readUpsertTargets(runner: QueryRunner, metadata: EntityMetadata): Promise<ObjectLiteral[]> {
    const conflict = this.map.onUpdate?.conflict;
    const names = conflict === undefined ? [] : Array.isArray(conflict) ? conflict : conflict.split(',').map((n) => n.trim().replace(/["`]/g, ''));
    const columns = names.length
      ? names.map((name) => metadata.findColumnWithDatabaseName(name) ?? metadata.findColumnWithPropertyPath(name))
      : metadata.primaryColumns;
    if (columns.some((column) => !column)) throw new Error(`unknown conflict target ${JSON.stringify(conflict)}`);
    const valueSets = this.qb.getValueSets?.() ?? [];
    for (const values of valueSets) upsertedValues.add(values);
    const lookups = valueSets.map((values) =>
      Object.fromEntries(columns.map((column) => [column!.propertyPath, column!.getEntityValue(values)])),
    );
    if (lookups.length === 0 || lookups.some((lookup) => Object.values(lookup).some((v) => v === undefined))) {
      throw new Error('the upsert values do not carry every conflict column');
    }
    const toOne = metadata.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => r.propertyPath);
    return runner.manager
      .getRepository(metadata.target)
      .find({ where: lookups, withDeleted: true, loadRelationIds: { relations: toOne, disableMixedMap: true } });
  }
}
