import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DataSource, EntityManager, EntityMetadata, QueryRunner } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_LOG_TABLE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { excludedFields, isExcludedEntity } from '../decorators/audit-exclude.decorator.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import type { AuditEntityRef } from '../interfaces/audit-module-options.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { ChangeSet, type CapturedChange } from './change-set.js';
import { TrackedFields } from './entity-snapshot.js';

/** Changes of one transaction level, per unit of work (`null`: outside any). */
type Frame = Map<UnitOfWork | null, ChangeSet>;

/**
 * Where captured changes go. Outside a transaction: into the current unit of work, or,
 * outside any unit, straight into `audit_log` as fallback events. Inside a transaction:
 * into a frame per transaction level that is merged upwards on commit and dropped on
 * rollback; at the outermost commit, changes that belong to no live unit are written in
 * that same transaction, so they commit and roll back with it.
 */
@Injectable()
export class ChangeCapture {
  private readonly logger = new Logger('Audit');
  private readonly frames = new WeakMap<QueryRunner, Frame[]>();
  private readonly fields = new WeakMap<EntityMetadata, TrackedFields | null>();

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Inject(AUDIT_DATA_SOURCE) readonly dataSource: DataSource,
    private readonly context: AuditContext,
    private readonly recorder: AuditRecorder,
    private readonly builder: AuditEventBuilder,
  ) {}

  get maxCriteriaRows(): number {
    return this.options.maxCriteriaRows;
  }

  /** The fields followed for an entity, or `null` when the entity is not captured at all. */
  trackedFields(metadata: EntityMetadata): TrackedFields | null {
    let tracked = this.fields.get(metadata);
    if (tracked === undefined) {
      tracked = this.isCaptured(metadata)
        ? new TrackedFields(
            metadata,
            new Set([...excludedFields(metadata.target), ...(this.options.excludeFields.get(metadata.name) ?? [])]),
          )
        : null;
      this.fields.set(metadata, tracked);
    }
    return tracked;
  }

  /**
   * Records one change where it belongs (see the class comment): by default in the
   * unit of work of the code running now, or in `unitOfWork` when the caller knows it.
   */
  async record(
    runner: QueryRunner | undefined,
    change: Omit<CapturedChange, 'at'>,
    unitOfWork: UnitOfWork | null = this.context.current() ?? null,
  ): Promise<void> {
    const unit = unitOfWork;
    const deleteDateField = this.deleteDateField(change.entity);
    const captured: CapturedChange = { ...change, at: new Date(), ...(deleteDateField ? { deleteDateField } : {}) };
    const stack = runner?.isTransactionActive ? this.frames.get(runner) : undefined;
    const frame = stack?.[stack.length - 1];
    if (frame) {
      let set = frame.get(unit);
      if (!set) frame.set(unit, (set = new ChangeSet()));
      set.record(captured);
    } else if (unit && !unit.ended) {
      unit.changes.record(captured);
    } else {
      await this.storeFallback(unit, [captured], runner?.isReleased === false ? runner.manager : undefined);
    }
  }

  private readonly deleteDateFields = new Map<string, string | undefined>();

  private deleteDateField(entity: string): string | undefined {
    if (!this.deleteDateFields.has(entity)) {
      const metadata = this.dataSource.entityMetadatas.find((candidate) => candidate.name === entity);
      this.deleteDateFields.set(entity, metadata?.deleteDateColumn?.propertyPath);
    }
    return this.deleteDateFields.get(entity);
  }

  transactionStarted(runner: QueryRunner): void {
    const stack = this.frames.get(runner) ?? [];
    stack.push(new Map());
    this.frames.set(runner, stack);
  }

  /** Before the outermost COMMIT: write what no live unit will claim, in the transaction. */
  async beforeCommit(runner: QueryRunner): Promise<void> {
    const stack = this.frames.get(runner);
    if (!stack || stack.length !== 1) return;
    const frame = stack[0]!;
    for (const [unit, set] of frame) {
      if (unit && !unit.ended) continue;
      frame.delete(unit);
      await this.storeFallback(unit, set.take(() => true), runner.manager);
    }
  }

  /** After a COMMIT (or RELEASE SAVEPOINT): hand the level's changes up. */
  async committed(runner: QueryRunner): Promise<void> {
    const stack = this.frames.get(runner);
    const frame = stack?.pop();
    if (!stack || !frame) return;
    const parent = stack[stack.length - 1];
    for (const [unit, set] of frame) {
      if (parent) {
        let target = parent.get(unit);
        if (!target) parent.set(unit, (target = new ChangeSet()));
        target.absorb(set);
      } else if (unit) {
        unit.changes.absorb(set);
        // A unit that ended meanwhile is not flushed again by its owner: flush it here.
        if (unit.ended) await this.recorder.flush(unit).catch(() => undefined);
      }
    }
  }

  /** After a ROLLBACK (or ROLLBACK TO SAVEPOINT): the level's changes never happened. */
  rolledBack(runner: QueryRunner): void {
    this.frames.get(runner)?.pop();
  }

  private async storeFallback(unit: UnitOfWork | null, changes: CapturedChange[], manager?: EntityManager): Promise<void> {
    if (changes.length === 0) return;
    const actor = unit ? await this.recorder.resolveActor(unit) : { type: 'system' };
    const rows = changes.map((change) => this.builder.changeRow(change, unit ?? undefined, actor));
    await this.recorder.storeNow(rows, manager);
  }

  private isCaptured(metadata: EntityMetadata): boolean {
    if (metadata.target === AuditLogEntity || metadata.tableName === AUDIT_LOG_TABLE) return false;
    if (metadata.tableType === 'view' || metadata.tableType === 'junction' || metadata.tableType === 'closure-junction') {
      return false;
    }
    const matches = (ref: AuditEntityRef) => ref === metadata.target || ref === metadata.name || ref === metadata.tableName;
    if (isExcludedEntity(metadata.target) || this.options.excludeEntities.some(matches)) return false;
    return this.options.includeEntities ? this.options.includeEntities.some(matches) : true;
  }

  warn(message: string): void {
    this.logger.warn(message);
  }
}
