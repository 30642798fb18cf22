import { HttpException, Inject, Injectable } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { CapturedChange } from '../capture/change-set.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import type {
  AuditActor,
  AuditChange,
  AuditError,
  AuditEvent,
  AuditFieldChange,
  AuditRelationChange,
  AuditRequestInfo,
  AuditUnreadableFields,
} from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { actorForStorage } from './actor-pseudonyms.js';
import { lowerCamel } from './audit-action.js';
import { bound, MAX_JSON_KEY, MAX_JSON_STRING, storedId, toJsonSafe } from './json-safe.js';
import { REDACTED } from './redaction.js';
import { uuidv7 } from './uuid-v7.js';

const OPERATION_VERBS = { insert: 'created', update: 'updated', delete: 'deleted' } as const;

/**
 * The fallback action of a change: `<entity>.created|updated|deleted`. A soft delete
 * (the delete-date column going from empty to set) reads as `deleted`.
 */
export function changeAction(change: Pick<CapturedChange, 'entity' | 'operation' | 'fields' | 'deleteDateField'>): string {
  const softDelete = change.deleteDateField ? change.fields[change.deleteDateField] : undefined;
  const verb =
    change.operation === 'update' && softDelete && 'to' in softDelete && softDelete.to != null && softDelete.from == null
      ? 'deleted'
      : OPERATION_VERBS[change.operation];
  return `${lowerCamel(change.entity)}.${verb}`;
}

/**
 * Arrays and objects a changed field's value sits inside in its stored documents: five in
 * a journal entry (`{ changes: [{ fields: { <field>: { to: … } } }] }`), four in
 * `audit_log.changes`. Values are bounded for the deeper, so that an event recovered
 * from the journal holds what the event stored directly would have held.
 */
const FIELD_VALUE_NESTING = 5;

const nullable = (value: string | undefined | null, max: number): string | null => bound(value, max) ?? null;
/** An id column's value: a long id cut with a digest of the whole, as searches by it are cut (see {@link storedId}). */
const nullableId = (value: string | undefined | null): string | null => (value === undefined || value === null ? null : storedId(String(value)));

/** Turns pending intents and captured changes into `audit_log` rows, redacted and bounded. */
@Injectable()
export class AuditEventBuilder {
  constructor(@Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions) {}

  /**
   * An intent's row with the changes it claimed. Without an explicit target, the one
   * instance the event changed is its target when `claimed` is all it changed (not so
   * when more of its changes are kept only in the journal: `complete` false); with
   * several, none.
   */
  intentRow(intent: PendingIntent, unit: UnitOfWork | undefined, actor: AuditActor, claimed: CapturedChange[], complete = true): AuditLogEntity {
    const changes = [...(intent.changes ?? []), ...claimed];
    const only = complete && claimed.length === 1 && !intent.changes?.length ? claimed[0] : undefined;
    const target = intent.target ?? (only?.id ? { type: only.entity, id: only.id } : undefined);
    return this.row({
      id: intent.id,
      occurredAt: intent.occurredAt,
      action: intent.action,
      outcome: intent.outcome,
      kind: 'intent',
      actor: intent.actor ?? actor,
      source: intent.source ?? unit?.source ?? 'system',
      request: intent.request ?? unit?.request ?? {},
      targetType: target?.type,
      targetId: target?.id,
      changes: this.sanitiseChanges(changes),
      context: this.eventContext(intent.context, unit),
      reason: intent.reason,
      error: intent.error ?? null,
    });
  }

  changeRow(change: CapturedChange, unit: UnitOfWork | undefined, actor: AuditActor): AuditLogEntity {
    return this.row({
      id: uuidv7(change.at.getTime()),
      occurredAt: change.at,
      action: changeAction(change),
      outcome: 'success',
      kind: 'change',
      actor,
      source: unit?.source ?? 'system',
      request: unit?.request ?? {},
      targetType: change.entity,
      targetId: change.id ?? undefined,
      changes: this.sanitiseChanges([change]),
      context: this.eventContext(undefined, unit),
      reason: undefined,
      error: null,
    });
  }

  /** An event's context: the given one (sanitised), plus the origin request of late work. */
  private eventContext(context: Record<string, unknown> | undefined, unit: UnitOfWork | undefined): Record<string, unknown> | null {
    const origin = unit?.originRequestId;
    if (!context) return origin ? { originRequestId: origin } : null;
    const safe = this.sanitiseContext(context);
    return origin && safe['originRequestId'] === undefined ? { ...safe, originRequestId: origin } : safe;
  }

  /** Excluded fields dropped, secret fields masked, values, names and ids made JSON-safe and storable. */
  sanitiseChanges(changes: readonly AuditChange[]): AuditChange[] {
    return changes.map((change) => {
      // A change is sanitised when it is journaled and again when its event is built.
      let safe = this.sanitised.get(change);
      if (!safe) this.sanitised.set(change, (safe = this.sanitiseChange(change)));
      return safe;
    });
  }

  /** Changes are never modified once captured: their sanitised form, by identity. */
  private readonly sanitised = new WeakMap<AuditChange, AuditChange>();

  private sanitiseChange(change: AuditChange): AuditChange {
    const redactor = this.options.redactor;
    const excluded = this.options.excludeFields.get(change.entity);
    // Fields secret by their column rather than their name: a column or key secret by its database name only.
    const secretFields = this.options.secretKeys.secretFields(change.entity);
    const fields: Record<string, AuditFieldChange | AuditRelationChange> = {};
    for (const [field, value] of Object.entries(change.fields)) {
      if (excluded?.has(field)) continue;
      const name = bound(field, MAX_JSON_KEY);
      if ('added' in value && 'removed' in value) {
        const storableId = (id: unknown): string => bound(String(id), MAX_JSON_STRING);
        fields[name] = { added: value.added.map(storableId), removed: value.removed.map(storableId) };
      } else if (redactor.isSecret(name) || secretFields?.has(field)) {
        // Only values that exist are masked: an insert's `from` and a delete's `to` stay null.
        fields[name] = {
          ...('from' in value ? { from: value.from == null ? null : REDACTED } : {}),
          ...('to' in value ? { to: value.to == null ? null : REDACTED } : {}),
        };
      } else {
        const field: AuditFieldChange = {};
        if ('from' in value) field.from = redactor.safe(value.from, FIELD_VALUE_NESTING) ?? null;
        if ('to' in value) field.to = redactor.safe(value.to, FIELD_VALUE_NESTING) ?? null;
        fields[name] = field;
      }
    }
    return {
      entity: bound(change.entity, MAX_JSON_KEY),
      id: change.id == null ? change.id : bound(change.id, MAX_JSON_STRING),
      operation: change.operation,
      fields,
      ...(change.partial ? { partial: true } : {}),
      ...(change.count !== undefined ? { count: change.count } : {}),
      ...(change.table ? { table: bound(change.table, MAX_JSON_KEY) } : {}),
    };
  }

  /** Secrets masked and the size bounded (oversized context is replaced by a marker). */
  sanitiseContext(context: Record<string, unknown>): Record<string, unknown> {
    const { safe, bytes } = this.measureContext(context);
    return bytes > this.options.maxContextBytes ? { truncated: true, bytes } : safe;
  }

  /** The context as it would be stored, and its size in bytes of JSON. */
  measureContext(context: Record<string, unknown>): { safe: Record<string, unknown>; bytes: number } {
    // Its own output comes back when an event built from measured input is built (`log()`
    // measures the context to refuse an oversized one; the row is built from that).
    const known = this.measured.get(context);
    if (known !== undefined) return { safe: context, bytes: known };
    const safe = this.options.redactor.safe(context) as Record<string, unknown>;
    const bytes = Buffer.byteLength(JSON.stringify(safe));
    // A context whose JSON form is not an object (its `toJSON` gave a string, or threw) is not kept.
    if (typeof safe === 'object' && safe !== null) this.measured.set(safe, bytes);
    return { safe, bytes };
  }

  /** Sanitised contexts this builder made (new objects, never changed afterwards), with their size. */
  private readonly measured = new WeakMap<object, number>();

  /** Class, HTTP status and (for HTTP exceptions only) the client-facing message; never a stack. */
  errorSummary(error: unknown): AuditError {
    if (error instanceof HttpException) {
      const response = error.getResponse();
      const message =
        typeof response === 'string'
          ? response
          : typeof (response as { message?: unknown }).message === 'string'
            ? ((response as { message: string }).message)
            : error.message;
      return { name: bound(error.constructor.name, 128), status: error.getStatus(), message: bound(message, 512) };
    }
    if (error instanceof Error) {
      const status = (error as { status?: unknown; statusCode?: unknown }).status ?? (error as { statusCode?: unknown }).statusCode;
      return { name: bound(error.constructor.name || error.name, 128)!, ...(typeof status === 'number' ? { status } : {}) };
    }
    return { name: typeof error };
  }

  /** A stored row as the public event shape. */
  toEvent(row: AuditLogEntity, unreadable?: AuditUnreadableFields): AuditEvent {
    const request: AuditRequestInfo = {};
    if (row.ip) request.ip = row.ip;
    if (row.userAgent) request.userAgent = row.userAgent;
    if (row.method) request.method = row.method;
    if (row.route) request.route = row.route;
    if (row.path) request.path = row.path;
    if (row.requestId) request.requestId = row.requestId;
    const actor: AuditActor = { type: row.actorType };
    if (row.actorId) actor.id = row.actorId;
    if (row.actorDisplay) actor.display = row.actorDisplay;
    return {
      id: row.id,
      occurredAt: row.occurredAt instanceof Date ? row.occurredAt : new Date(row.occurredAt),
      action: row.action,
      outcome: row.outcome,
      kind: row.kind,
      actor,
      source: row.source,
      request,
      ...(row.targetType && row.targetId !== null ? { target: { type: row.targetType, id: row.targetId } } : {}),
      changes: row.changes ?? [],
      ...(row.context ? { context: row.context } : {}),
      ...(row.reason ? { reason: row.reason } : {}),
      ...(row.error ? { error: row.error } : {}),
      ...(row.seq !== null && row.seq !== undefined ? { seq: row.seq } : {}),
      ...(unreadable && Object.keys(unreadable).length ? { unreadable } : {}),
    };
  }

  private row(fields: {
    id: string;
    occurredAt: Date;
    action: string;
    outcome: AuditLogEntity['outcome'];
    kind: AuditLogEntity['kind'];
    actor: AuditActor;
    source: string;
    request: AuditRequestInfo;
    targetType: string | undefined;
    targetId: string | undefined;
    changes: AuditChange[] | null;
    context: Record<string, unknown> | null;
    reason: string | undefined;
    error: AuditError | null;
  }): AuditLogEntity {
    const row = new AuditLogEntity();
    row.id = fields.id;
    row.occurredAt = fields.occurredAt;
    row.action = bound(fields.action, 128);
    row.outcome = fields.outcome;
    row.kind = fields.kind;
    // Every actor becomes a row here: pseudonymised (when configured) before anything else.
    const actor = actorForStorage(fields.actor, this.options.pseudonymizer);
    row.actorType = bound(actor.type, 64) || 'anonymous';
    row.actorId = nullableId(actor.id);
    row.actorDisplay = nullable(actor.display, 255);
    row.source = bound(fields.source, 64) || 'system';
    row.ip = nullable(fields.request.ip, 64);
    row.userAgent = nullable(fields.request.userAgent, 512);
    row.method = nullable(fields.request.method, 16);
    row.route = nullable(fields.request.route, 512);
    row.path = nullable(fields.request.path, 2048);
    row.requestId = nullable(fields.request.requestId, 128);
    row.targetType = nullable(fields.targetType, 128);
    row.targetId = nullableId(fields.targetId);
    row.changes = fields.changes;
    row.context = actor.erased ? { ...fields.context, actorErased: true } : fields.context;
    row.reason = nullable(fields.reason, 1024);
    row.error = fields.error ? (toJsonSafe(fields.error) as AuditError) : null;
    return row;
  }
}
