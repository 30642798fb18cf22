import { Inject, Injectable } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { CapturedChange } from '../capture/change-set.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import type { AuditActor, AuditChange, AuditTarget } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditEventBuilder } from './audit-event.builder.js';
import { chunkBy, jsonBytes, shrinkChange } from './event-bounds.js';
import { uuidv7 } from './uuid-v7.js';

const sameType = (target: AuditTarget, entity: string): boolean =>
  target.type === entity || target.type.toLowerCase() === entity.toLowerCase();

/** A captured change as an audit change (without its capture time). */
const stripCapture = ({ at: _at, deleteDateField: _field, ...change }: CapturedChange): AuditChange => change;

const rank = (intent: PendingIntent): number => (intent.claim === 'target' ? 0 : intent.claim === 'all' ? 1 : 2);

/**
 * Turns a unit of work into its `audit_log` rows: each intent claims its changes (intents
 * with a target first, then the handler's event takes the rest), every unclaimed change
 * becomes a fallback event, and no row is past the bounds (`maxChangesPerEvent`,
 * `maxEventBytes`): a large intent becomes several numbered rows, an oversized change a
 * partial one.
 */
@Injectable()
export class UnitEvents {
  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly builder: AuditEventBuilder,
  ) {}

  /**
   * The unit's events: intents with the changes they claim, then a fallback event per
   * unclaimed change. `spilledParts` more parts of the handler's event (changes the unit
   * keeps only in the journal) are counted in its part numbering; they are built by
   * `spilledRows`.
   */
  build(unit: UnitOfWork, actor: AuditActor, spilledParts = 0): AuditLogEntity[] {
    // Intents with a target claim first, then the handler's event takes the rest.
    const intents = unit.intents.splice(0).sort((a, b) => rank(a) - rank(b));
    const rows: AuditLogEntity[] = [];
    for (const intent of intents) {
      const extra = intent.claim === 'all' ? spilledParts : 0;
      rows.push(...this.intentRows(this.settled(intent, unit), unit, actor, this.claim(unit, intent), extra));
    }
    for (const change of unit.changes.take(() => true)) rows.push(this.bounded(this.builder.changeRow(change, unit, actor)));
    return rows.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Rows for changes read back from the journal (already redacted and bounded): parts
   * `firstPart`… of the handler's event `handler` (whose part 1 has `handler.id`), or, for
   * a unit without one, a fallback event per change.
   */
  spilledRows(
    unit: UnitOfWork,
    actor: AuditActor,
    handler: PendingIntent | undefined,
    chunks: ReadonlyArray<readonly CapturedChange[]>,
    firstPart: number,
    partCount: number,
  ): AuditLogEntity[] {
    if (!handler) return chunks.flat().map((change) => this.bounded(this.builder.changeRow(change, unit, actor)));
    return chunks.map((chunk, i) => this.partRow(this.settled(handler, unit), unit, actor, chunk.map(stripCapture), firstPart + i, partCount));
  }

  /** The fallback event of one change, within the bounds. */
  changeEvent(change: CapturedChange, unit: UnitOfWork | undefined, actor: AuditActor): AuditLogEntity {
    return this.bounded(this.builder.changeRow(change, unit, actor));
  }

  /** The rows of one intent that claims nothing (a `log()` stored at once), within the bounds. */
  intentEvents(intent: PendingIntent, unit: UnitOfWork | undefined, actor: AuditActor): AuditLogEntity[] {
    return this.intentRows(intent, unit, actor, []);
  }

  /**
   * The handler's event of a unit whose transaction rolled back after the handler, or whose
   * HTTP response the server destroyed before its end (its client never got the whole
   * answer): a failure.
   */
  private settled(intent: PendingIntent, unit: UnitOfWork): PendingIntent {
    if (!intent.handler || intent.outcome !== 'success') return intent;
    if (unit.rolledBackAfterHandler) return { ...intent, outcome: 'failure', error: { name: 'TransactionRolledBack' } };
    if (unit.wasResponseCut) return { ...intent, outcome: 'failure', error: { name: 'ResponseDestroyed' } };
    return intent;
  }

  /**
   * One intent, as one row or — past `maxChangesPerEvent` changes or `maxEventBytes` bytes
   * of changes, or with `extraParts` — as several rows of the same action, numbered in
   * `context.part` (`{ index, count, first }`, `first` the id of part 1).
   */
  private intentRows(intent: PendingIntent, unit: UnitOfWork | undefined, actor: AuditActor, claimed: CapturedChange[], extraParts = 0): AuditLogEntity[] {
    const { maxChangesPerEvent, maxEventBytes } = this.options;
    const single = this.builder.intentRow(intent, unit, actor, claimed, extraParts === 0);
    const explicit = intent.changes?.length ?? 0;
    if (extraParts === 0 && claimed.length + explicit <= maxChangesPerEvent && jsonBytes(single.changes) <= maxEventBytes) return [single];
    if (extraParts === 0 && claimed.length + explicit <= 1) return [this.bounded(single)];
    // Every change of the event went to the journal (a multiple of the spill size): its parts
    // are all built from there, part 1 included; an empty part here would be one too many.
    if (extraParts > 0 && claimed.length + explicit === 0) return [];
    const target = single.targetType && single.targetId ? { type: single.targetType, id: single.targetId } : undefined;
    const chunks = chunkBy(single.changes ?? [], maxChangesPerEvent, maxEventBytes, jsonBytes);
    return chunks.map((chunk, index) => this.partRow({ ...intent, target }, unit, actor, chunk, index + 1, chunks.length + extraParts));
  }

  /** Part `index` of `count` of an intent, carrying `changes` (already sanitised). */
  private partRow(intent: PendingIntent, unit: UnitOfWork | undefined, actor: AuditActor, changes: readonly AuditChange[], index: number, count: number): AuditLogEntity {
    const row = this.builder.intentRow(
      {
        ...intent,
        id: index === 1 ? intent.id : uuidv7(intent.occurredAt.getTime()),
        changes: [],
        context: { ...intent.context, part: { index, count, first: intent.id } },
      },
      unit,
      actor,
      [],
    );
    row.changes = changes.map((change) => shrinkChange(change, this.options.maxEventBytes));
    return row;
  }

  /** A row whose changes are past `maxEventBytes`: the changes' largest values are replaced by size markers. */
  private bounded(row: AuditLogEntity): AuditLogEntity {
    if (row.changes && jsonBytes(row.changes) > this.options.maxEventBytes) {
      row.changes = row.changes.map((change) => shrinkChange(change, Math.floor(this.options.maxEventBytes / row.changes!.length)));
    }
    return row;
  }

  private claim(unit: UnitOfWork, intent: PendingIntent): CapturedChange[] {
    if (intent.claim === 'all') return unit.changes.take(() => true);
    const target = intent.target;
    if (intent.claim === 'target' && target) {
      return unit.changes.take((change) => change.id === target.id && sameType(target, change.entity));
    }
    return [];
  }
}
