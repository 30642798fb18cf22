/** `success` or `failure` of the audited operation; `unknown` for a unit recovered after its process died. */
export type AuditOutcome = 'success' | 'failure' | 'unknown';

/** `intent`: a decorated handler or a manual log; `change`: a fallback entity change. */
export type AuditKind = 'intent' | 'change';

/** Well-known actor types; any other string is accepted as a custom type. */
export type AuditActorType = 'user' | 'service' | 'system' | 'anonymous' | (string & {});

/** Who did it. */
export interface AuditActor {
  type: AuditActorType;
  id?: string;
  display?: string;
}

/** Well-known sources; any other label (for example `admin`) is accepted. */
export type AuditSourceLabel = 'http' | 'graphql' | 'rpc' | 'ws' | 'job' | 'cli' | 'system' | (string & {});

/** The affected resource. */
export interface AuditTarget {
  type: string;
  id: string;
}

/** Request data recorded with an event. All fields are bounded strings. */
export interface AuditRequestInfo {
  ip?: string;
  userAgent?: string;
  method?: string;
  /** The route pattern, for example `/orders/:id`. */
  route?: string;
  /** The concrete path, without the query string by default. */
  path?: string;
  requestId?: string;
}

/** One field's net change. */
export interface AuditFieldChange {
  from?: unknown;
  to?: unknown;
}

/** A many-to-many relation change on the owning entity. */
export interface AuditRelationChange {
  added: string[];
  removed: string[];
}

export type AuditChangeOperation = 'insert' | 'update' | 'delete';

/** The net change of one entity instance. */
export interface AuditChange {
  entity: string;
  id: string | null;
  operation: AuditChangeOperation;
  fields: Record<string, AuditFieldChange | AuditRelationChange>;
  /** Present and `true` when the change could only be recorded in part. */
  partial?: boolean;
  /**
   * On a partial change with no `id`: how many rows the database reported changed that are
   * not recorded one by one (past `maxCriteriaRows`, or written by another connection
   * between the read of the before-values and the write). Absent when the database did not say.
   */
  count?: number;
  /**
   * The table a raw SQL write named, when no entity maps it (`entity` is then `unknown`).
   * Absent when the statement's target could not be read.
   */
  table?: string;
}

/** Summary of a failure: never a stack trace. */
export interface AuditError {
  name: string;
  status?: number;
  message?: string;
}

/** One stored audit event, as returned by `AuditService.find()` and `history()`. */
export interface AuditEvent {
  id: string;
  occurredAt: Date;
  action: string;
  outcome: AuditOutcome;
  kind: AuditKind;
  actor: AuditActor;
  source: AuditSourceLabel;
  request: AuditRequestInfo;
  target?: AuditTarget;
  changes: AuditChange[];
  context?: Record<string, unknown>;
  reason?: string;
  error?: AuditError;
  /**
   * The event's position in the tamper-evident log, from 1, gapless: present once the
   * event is sequenced (with `integrity` configured, about a second after it is stored).
   */
  seq?: number;
  /**
   * Present only on a row changed by hand (the module never writes one, and `verify()`
   * reports it as `modified`): each field whose stored value cannot be read, with the text
   * the database holds. See {@link AuditUnreadableFields}.
   */
  unreadable?: AuditUnreadableFields;
}

/**
 * The fields of an event whose stored value cannot be read, each as the text the database
 * holds. The event's own field then says nothing of it: `occurredAt` is an invalid `Date`
 * (`getTime()` is `NaN`), `changes` is `[]`, `context` and `error` are absent.
 */
export interface AuditUnreadableFields {
  /** `occurred_at` that is no time (SQLite text such as `garbage`, PostgreSQL `infinity`, MariaDB's zero date). */
  occurredAt?: string;
  /** A JSON column holding text that is not JSON (SQLite keeps any text). */
  changes?: string;
  context?: string;
  error?: string;
}
