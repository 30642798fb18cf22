import type { EntityManager } from 'typeorm';
import type {
  AuditActor,
  AuditChange,
  AuditEvent,
  AuditKind,
  AuditOutcome,
  AuditRequestInfo,
  AuditSourceLabel,
  AuditTarget,
} from './audit-event.interface.js';

/** A target given as `{ type, id }` (numeric ids are accepted) or as a TypeORM entity instance. */
export type AuditTargetInput = { type: string; id: string | number } | object;

/** Input of `AuditService.log()`. */
export interface AuditLogInput {
  /** Dotted lower-case name, e.g. `order.shipped`. */
  action: string;
  /** @default the current unit of work's actor, else `{ type: 'system' }` */
  actor?: { type: AuditActor['type']; id?: string | number; display?: string };
  /** The affected resource; its changes in the current unit of work are claimed by this event. */
  target?: AuditTargetInput;
  /** Free-form JSON data, redacted and size-bounded. */
  context?: Record<string, unknown>;
  reason?: string;
  /** @default 'success' */
  outcome?: AuditOutcome;
  /** Explicit changes to record with the event. */
  changes?: AuditChange[];
}

/** Options of `AuditService.log()`. */
export interface AuditLogOptions {
  /**
   * Write the event in this manager's transaction (for a transaction started by hand on
   * a query runner; one started with `transaction()` is found without it).
   */
  manager?: EntityManager;
}

/** Options of `AuditService.runAs()`. */
export interface AuditRunOptions {
  /** @default 'job' */
  source?: AuditSourceLabel;
  /** Carry the id of the request that started the work (for queued jobs). */
  requestId?: string;
  /** Other request data to carry (ip, route, …). */
  request?: AuditRequestInfo;
}

/** Filters of `AuditService.find()`. All given filters must match. */
export interface AuditQuery {
  action?: string | string[];
  /** Events by one actor: `{ type?, id? }` (the same as `actorType` / `actorId`). */
  actor?: { type?: string; id?: string | number };
  /**
   * Events by this actor id. With `pseudonymize` on, a clear id is mapped to its
   * pseudonym (give `actorType` too); an id starting with `hmac:` is used as it is.
   */
  actorId?: string;
  actorType?: string;
  /** Events about one resource (`{ type, id }` or an entity instance). */
  target?: AuditTargetInput;
  targetType?: string;
  source?: AuditSourceLabel;
  outcome?: AuditOutcome;
  kind?: AuditKind;
  requestId?: string;
  /** Inclusive lower bound of `occurredAt`. */
  from?: Date | string;
  /** Exclusive upper bound of `occurredAt`. */
  to?: Date | string;
  /** @default 50, at most 1000 */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

/** Filters of `AuditService.export()`: those of `find()`, without paging (an export reads every match). */
export type AuditExportQuery = Omit<AuditQuery, 'limit' | 'cursor'>;

/** The formats of `AuditService.export()`. */
export type AuditExportFormat = 'jsonl' | 'csv';

/** Options of `AuditService.export()`. */
export interface AuditExportOptions {
  /**
   * `jsonl`: one event per line, the canonical JSON its Merkle leaf hashes plus `seq`
   * (what `verify --events` checks); `csv`: a header row and one row per event, cells
   * that a spreadsheet would run as a formula prefixed with `'`.
   * @default 'jsonl'
   */
  format?: AuditExportFormat;
}

/**
 * An event `export()` left out, emitted as the stream's `'skipped'` event: its row cannot
 * be written as it is stored (a JSON column holding text the module does not write, or a
 * value JSON cannot carry). The module never stores such a row; `verify()` reports it.
 */
export interface AuditExportSkipped {
  id: string;
  /** `null` when the row has no seq. */
  seq: number | null;
  /** Why its row cannot be written. */
  reason: string;
}

/** One page of `AuditService.find()`, newest first. */
export interface AuditPage {
  items: AuditEvent[];
  /** Pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

export type { AuditTarget };

/** Options of `AuditService.purge()`. */
export interface AuditPurgeOptions {
  /** Events that occurred before this time are removed (a `Date` or ISO 8601 text, not in the future). */
  before: Date | string;
  /** Events deleted per transaction. @default 5000, at most 20000 */
  batchSize?: number;
}

/** What `AuditService.purge()` did. */
export interface AuditPurgeResult {
  /** Events removed. */
  deleted: number;
  /** The cut-off the purge used. */
  before: Date;
  /** The `audit.purged` event recording this purge (none when there was nothing to purge). */
  eventId?: string;
  /** With `integrity` on: events 1 to `throughSeq` are gone. */
  throughSeq?: number;
  /** With `integrity` on: the signed purge record (a checkpoint note naming the range), also handed to `anchor`. */
  record?: string;
  /**
   * With `integrity` on: the event the purge stopped before, although the database said it
   * was older than `before`, because its row is missing, repeated, or no longer matches its
   * signed leaf (`verify()` reports it; `message` says which). It and the later events stay
   * until its row is restored as it was signed.
   */
  stoppedAt?: { seq: number; id?: string; message: string };
}
