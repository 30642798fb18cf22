import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type {
  AfterQueryEvent,
  EntityMetadata,
  BeforeQueryEvent,
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
import { diffSnapshots, snapshotFields } from './entity-snapshot.js';
import { attachTransactionScope } from '../integrations/typeorm-transaction-scope.js';
import { isInsideQueryBuilder } from '../integrations/typeorm-write-query-builders.js';
import { upsertedValues } from './criteria-write.js';
import { attachQueryBuilderCapture, detachQueryBuilderCapture } from './query-builder.capture.js';

const SUBSCRIBER = Symbol.for('nestjs-system-audit:subscriber');

/** Whether a raw-looking write came from outside a query builder, and which unit of work sent it. */
interface QueryNote {
  raw: boolean;
  unit: UnitOfWork | null;
}
const RAW_WRITE = /^\s*(insert\s+(?:ignore\s+)?into|update|delete\s+from|replace\s+into)\s+((?:[`"[]?[\w$]+[`"\]]?\.)?[`"[]?[\w$]+[`"\]]?)/i;

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
  /** Notes of raw-looking writes, by their parameters array (the same object reaches beforeQuery and afterQuery). */
  private readonly notedByParameters = new WeakMap<object, QueryNote>();
  /** Notes of writes sent without a parameters array, in order per query runner. */
  private readonly notedInOrder = new WeakMap<QueryRunner, QueryNote[]>();

  constructor(
    private readonly dataSources: AuditDataSources,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly capture: ChangeCapture,
    private readonly context: AuditContext,
  ) {}

  onModuleInit(): void {
    if (!this.options.enabled) return;
    for (const dataSource of this.dataSources.captured) {
      const subscribers = dataSource.subscribers as EntitySubscriberInterface[];
      if (subscribers.some((subscriber) => (subscriber as { [SUBSCRIBER]?: true })[SUBSCRIBER])) continue;
      subscribers.push(this);
      attachQueryBuilderCapture(dataSource, this.capture);
      attachTransactionScope(dataSource);
    }
  }

  onApplicationShutdown(): void {
    if (!this.options.enabled) return;
    for (const dataSource of this.dataSources.captured) {
      const subscribers = dataSource.subscribers as EntitySubscriberInterface[];
      const index = subscribers.indexOf(this);
      if (index !== -1) subscribers.splice(index, 1);
      detachQueryBuilderCapture(dataSource, this.capture);
    }
  }

  afterInsert(event: InsertEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, entity } = event;
    const fields = this.capture.trackedFields(metadata);
    if (!fields || !entity || upsertedValues.has(entity)) return;
    return this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, entity),
      operation: 'insert',
      fields: snapshotFields(fields.snapshot(entity), 'to'),
    });
  }

  afterUpdate(event: UpdateEvent<ObjectLiteral>): Promise<void> | void {
    // Without the loaded row this is a write by criteria, captured around its query builder.
    const { metadata, entity, databaseEntity } = event;
    const fields = this.capture.trackedFields(metadata);
    if (!fields || !entity || !databaseEntity) return;
    const columns = fields.changed(event.updatedColumns, event.updatedRelations);
    if (columns.length === 0) return;
    return this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, databaseEntity) ?? entityId(metadata, entity),
      operation: 'update',
      fields: diffSnapshots(fields.snapshot(databaseEntity, columns), fields.snapshot(entity as ObjectLiteral, columns)),
    });
  }

  afterRemove(event: RemoveEvent<ObjectLiteral>): Promise<void> | void {
    const { metadata, databaseEntity, entity } = event;
    const fields = this.capture.trackedFields(metadata);
    const row = databaseEntity ?? entity;
    if (!fields || !row) return;
    return this.capture.record(event.queryRunner, {
      entity: metadata.name,
      id: entityId(metadata, databaseEntity) ?? idOf(metadata, event.entityId),
      operation: 'delete',
      fields: snapshotFields(fields.snapshot(row), 'from'),
    });
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
    return this.capture.committed(event.queryRunner);
  }

  beforeTransactionRollback(event: TransactionRollbackEvent): void {
    this.capture.rollingBack(event.queryRunner);
  }

  /**
   * Notes, per query runner and in order, whether a statement is raw (not from a query
   * builder) and which unit of work sent it. Taken here, in the caller's async context:
   * some drivers (MySQL with TypeORM 0.3) report the end of a query from a callback
   * where that context is lost.
   */
  beforeQuery(event: BeforeQueryEvent): void {
    if (!RAW_WRITE.test(event.query)) return;
    const note: QueryNote = { raw: !isInsideQueryBuilder(), unit: this.context.current() ?? null };
    // Keyed by the parameters object where there is one: a driver that skips afterQuery for
    // a failed statement (TypeORM 0.3's better-sqlite3) then leaves no stale note behind.
    if (event.parameters && typeof event.parameters === 'object') {
      this.notedByParameters.set(event.parameters, note);
      return;
    }
    const queue = this.notedInOrder.get(event.queryRunner) ?? [];
    queue.push(note);
    this.notedInOrder.set(event.queryRunner, queue);
  }

  /** SQL run by hand (`query()`): recorded as a partial change of the table's entity. */
  afterQuery(event: AfterQueryEvent): Promise<void> | void {
    const match = RAW_WRITE.exec(event.query);
    if (!match) return;
    const parameters = event.parameters && typeof event.parameters === 'object' ? event.parameters : undefined;
    const noted = parameters ? this.notedByParameters.get(parameters) : this.notedInOrder.get(event.queryRunner)?.shift();
    if (parameters) this.notedByParameters.delete(parameters);
    if (!event.success || !noted?.raw) return;
    const table = match[2]!.replace(/[`"[\]]/g, '').split('.').pop()!;
    const metadata = event.connection.entityMetadatas.find((m) => m.tableName === table);
    if (!metadata || !this.capture.trackedFields(metadata)) return;
    const verb = match[1]!.toLowerCase();
    return this.capture.record(
      event.queryRunner,
      {
        entity: metadata.name,
        id: null,
        operation: verb.startsWith('delete') ? 'delete' : verb.startsWith('update') ? 'update' : 'insert',
        fields: {},
        partial: true,
      },
      noted.unit,
    );
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

/** The id string of TypeORM's `entityId` of a remove event: an id map, or the id itself. */
function idOf(metadata: EntityMetadata, id: unknown): string | null {
  return id !== null && typeof id === 'object' ? entityId(metadata, id as ObjectLiteral) : idFromKeyValues(metadata, [id]);
}
