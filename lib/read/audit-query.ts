import type { DataSource, SelectQueryBuilder } from 'typeorm';
import type { ActorPseudonymizer } from '../events/actor-pseudonyms.js';
import { lowerCamel } from '../events/audit-action.js';
import { PSEUDONYM_PREFIX } from '../events/pseudonym-prefix.js';
import { entityOfType } from '../events/audit-target.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditKind, AuditOutcome, AuditTarget } from '../interfaces/audit-event.interface.js';
import type { AuditExportQuery, AuditTargetInput } from '../interfaces/audit-service.interface.js';
import { storable, storedId } from '../events/json-safe.js';
import { MYSQL_DRIVERS } from '../storage/drivers.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';

/** What turning a query into SQL needs: the audit data source, the pseudonymizer, and how to name a target. */
export interface AuditQueryScope {
  dataSource: DataSource;
  /** Set when actor ids are stored as pseudonyms. */
  pseudonymizer?: ActorPseudonymizer | undefined;
  /** `{ type, id }` of a target given as `{ type, id }` or as an entity instance. */
  resolveTarget(target: AuditTargetInput, field: string): AuditTarget;
  /** The stored spellings of a target type (default: {@link typeVariants}; with the entities known, {@link targetTypes}). */
  targetTypes?(type: string): string[];
}

/** The filters of `find()` and `export()`. */
const FILTERS = new Set(['action', 'actor', 'actorId', 'actorType', 'target', 'targetType', 'source', 'outcome', 'kind', 'requestId', 'from', 'to']);
/** The most actions an `action` filter lists. */
const MAX_ACTIONS = 1000;
/** What `find()` takes besides the filters. */
const PAGING = new Set(['limit', 'cursor']);
/** The outcomes an event has (the `outcome` filter's values). */
export const AUDIT_OUTCOMES = ['success', 'failure', 'unknown'] as const satisfies readonly AuditOutcome[];
/** The kinds of events (the `kind` filter's values). */
export const AUDIT_KINDS = ['intent', 'change'] as const satisfies readonly AuditKind[];

/** A value as an error message shows it (`NaN` and `Infinity` as themselves, not as JSON's `null`). */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return typeof value === 'bigint' ? `${value}n` : String(JSON.stringify(value));
}

/** The `actor` filter's type and id, checked: `{ type?, id? }`, nothing else. */
function actorFilter(actor: unknown): { type?: string; id?: string | number } {
  if (actor === undefined) return {};
  if (actor === null || typeof actor !== 'object' || Array.isArray(actor)) {
    throw new InvalidAuditQueryError('actor', 'must be an object such as { type: "user", id: "42" }');
  }
  for (const key of Object.keys(actor)) {
    if (key !== 'type' && key !== 'id') throw new InvalidAuditQueryError(`actor.${key}`, 'is not a key of actor (it takes type and id)');
  }
  const { type, id: given } = actor as { type?: unknown; id?: unknown };
  if (type !== undefined && typeof type !== 'string') throw new InvalidAuditQueryError('actor.type', `must be a string, got ${describe(type)}`);
  const id = actorIdFilter('actor.id', given);
  return { ...(type !== undefined ? { type } : {}), ...(id !== undefined ? { id } : {}) };
}

/** An actor id filter (`actorId`, `actor.id`), checked: a string or a finite number. */
function actorIdFilter(field: string, id: unknown): string | number | undefined {
  if (id !== undefined && typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
    throw new InvalidAuditQueryError(field, `must be a string or a number, got ${describe(id)}`);
  }
  return id;
}

/**
 * Adds the filters of `query` (those of `find()` and `export()`: everything but `limit`
 * and `cursor`) to a query builder over `audit_log` aliased `e`. A key that is not a
 * filter (a typo such as `actorID`, or `targetId` for `target`) is refused rather than
 * ignored, which would return, export or count every event.
 *
 * @throws InvalidAuditQueryError for a filter it cannot use, or a key that is none.
 */
export function whereAuditQuery(qb: SelectQueryBuilder<AuditLogEntity>, query: AuditExportQuery, scope: AuditQueryScope, paged = false): void {
  if (query === null || typeof query !== 'object' || Array.isArray(query)) {
    throw new InvalidAuditQueryError('query', 'must be an object such as { actorId: "42" }');
  }
  for (const key of Object.keys(query)) {
    if (FILTERS.has(key) || (paged && PAGING.has(key))) continue;
    const hint = key === 'targetId' ? ' (a target is { target: { type, id } }, or targetType alone)' : key === 'since' || key === 'until' ? ' (a time range is { from, to })' : '';
    throw new InvalidAuditQueryError(key, `is not a filter${hint}; the filters are ${[...FILTERS].join(', ')}${paged ? ', with limit and cursor' : ''}`);
  }
  // Text filters are compared with the text as the module stores it (a NUL escaped, a lone surrogate replaced).
  const text = (field: string, value: unknown): string | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new InvalidAuditQueryError(field, `must be a string, got ${describe(value)}`);
    return storable(value);
  };
  const equals = exactMatch(scope.dataSource);
  const oneOf = <T extends string>(field: string, value: unknown, allowed: readonly T[]): T | undefined => {
    if (value === undefined) return undefined;
    if (!(allowed as readonly unknown[]).includes(value)) throw new InvalidAuditQueryError(field, `must be one of ${allowed.join(', ')}, got ${describe(value)}`);
    return value as T;
  };
  const actions = query.action === undefined ? [] : Array.isArray(query.action) ? query.action : [query.action];
  const typesOf = (type: string): string[] => scope.targetTypes?.(type) ?? typeVariants(type);
  if (actions.some((action) => typeof action !== 'string') || (Array.isArray(query.action) && actions.length === 0)) {
    throw new InvalidAuditQueryError('action', 'must be a string or a non-empty array of strings');
  }
  // Each action is a parameter: PostgreSQL and SQLite refuse a statement with tens of thousands.
  if (actions.length > MAX_ACTIONS) throw new InvalidAuditQueryError('action', `is a list of ${actions.length} actions; at most ${MAX_ACTIONS} are taken`);
  if (actions.length) qb.andWhere(...exactIn(scope.dataSource, 'e.action', 'action', actions));
  const actor = actorFilter(query.actor);
  const actorType = agreed('actorType', text('actorType', query.actorType), 'actor.type', actor.type === undefined ? undefined : storable(actor.type));
  const given = agreed('actorId', actorIdFilter('actorId', query.actorId), 'actor.id', actor.id);
  // Ids are compared as the id columns store them (a long one cut with a digest of the whole).
  const clear = given === undefined ? undefined : scope.pseudonymizer ? String(given) : storedId(String(given));
  const actorId = clear === undefined ? undefined : storedActorId(clear, actorType, scope.pseudonymizer);
  if (actorId === null) qb.andWhere('1 = 0'); // a clear id whose key is gone: no event maps from it
  else if (actorId !== undefined) qb.andWhere(equals('e.actorId', 'actorId'), { actorId });
  if (actorType !== undefined) qb.andWhere(equals('e.actorType', 'actorType'), { actorType });
  if (query.target !== undefined) {
    const target = scope.resolveTarget(query.target, 'target');
    qb.andWhere('e.targetType IN (:...targetTypes)', { targetTypes: typesOf(target.type) }).andWhere(equals('e.targetId', 'targetId'), { targetId: storedId(target.id) });
  }
  const targetType = text('targetType', query.targetType);
  if (targetType !== undefined) qb.andWhere('e.targetType IN (:...filterTypes)', { filterTypes: typesOf(targetType) });
  const source = text('source', query.source);
  if (source !== undefined) qb.andWhere(equals('e.source', 'source'), { source });
  const outcome = oneOf('outcome', query.outcome, AUDIT_OUTCOMES);
  if (outcome !== undefined) qb.andWhere('e.outcome = :outcome', { outcome });
  const kind = oneOf('kind', query.kind, AUDIT_KINDS);
  if (kind !== undefined) qb.andWhere('e.kind = :kind', { kind });
  const requestId = text('requestId', query.requestId);
  if (requestId !== undefined) qb.andWhere(equals('e.requestId', 'requestId'), { requestId });
  for (const [field, value] of [['from', query.from], ['to', query.to]] as const) {
    if (value === undefined) continue;
    const condition = occurredAtCondition(scope.dataSource, field === 'from' ? '>=' : '<', value, field);
    qb.andWhere(condition.where, condition.parameters);
  }
}

/** One filter given two ways (`actorType` and `actor.type`): the value, refused when the two differ. */
function agreed<T extends string | number>(field: string, value: T | undefined, other: string, otherValue: T | undefined): T | undefined {
  if (value !== undefined && otherValue !== undefined && String(value) !== String(otherValue)) {
    throw new InvalidAuditQueryError(field, `is ${describe(value)} but ${other} is ${describe(otherValue)}: give the actor once`);
  }
  return value ?? otherValue;
}

/**
 * The SQL of `column = :param`, compared exactly: an id in another case, with a trailing
 * space or another accent is another id. MySQL and MariaDB compare under the column's
 * collation (case- and accent-insensitive, trailing spaces ignored by default), so the
 * bytes are compared too — both sides in utf8mb4, whatever the column's character set
 * (latin1 bytes are not the parameter's) — beside the plain equality, which keeps the
 * index in use.
 */
export function exactMatch(dataSource: DataSource): (column: string, param: string) => string {
  return MYSQL_DRIVERS.has(dataSource.options.type)
    ? (column, param) => `${column} = :${param} AND BINARY CONVERT(${column} USING utf8mb4) = BINARY CONVERT(:${param} USING utf8mb4)`
    : (column, param) => `${column} = :${param}`;
}

/**
 * `column IN (…values)` compared exactly, as {@link exactMatch} compares one value: on
 * MySQL and MariaDB each value is compared by its bytes too. The SQL and its parameters
 * (`<param>0`, `<param>1`, …).
 */
function exactIn(dataSource: DataSource, column: string, param: string, values: readonly string[]): [string, Record<string, string>] {
  const params = Object.fromEntries(values.map((value, i) => [`${param}${i}`, value]));
  const names = Object.keys(params);
  const list = `${column} IN (${names.map((name) => `:${name}`).join(', ')})`;
  if (!MYSQL_DRIVERS.has(dataSource.options.type)) return [list, params];
  return [`${list} AND BINARY CONVERT(${column} USING utf8mb4) IN (${names.map((name) => `BINARY CONVERT(:${name} USING utf8mb4)`).join(', ')})`, params];
}

/** Whether `query` filters anything (an export of it is then the whole trail). */
export function filtersAnything(query: AuditExportQuery): boolean {
  return Object.values(query).some((value) => value !== undefined);
}

/**
 * The id to look for in `audit_log.actor_id`: with pseudonymisation, a clear id's
 * pseudonym (`null`: its key is gone), an id already a pseudonym as it is.
 */
export function storedActorId(id: string, actorType: string | undefined, pseudonymizer: ActorPseudonymizer | undefined): string | null {
  if (!pseudonymizer || id.startsWith(PSEUDONYM_PREFIX)) return id;
  if (actorType === undefined) {
    throw new InvalidAuditQueryError(
      'actorType',
      `is required with actorId when actor ids are pseudonymised (a pseudonym depends on the actor type); or pass the stored id (${PSEUDONYM_PREFIX}…) that pseudonymOf() returns`,
    );
  }
  return pseudonymizer.pseudonym(actorType, id);
}

/** An ISO 8601 date, or date and time with an optional zone (`Z`, `+02:00`, `+0200`); the year may be expanded (`+010000`). */
const ISO_INSTANT = /^(\d{4}|[+-]\d{6})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * The instant an ISO 8601 text names: a date (`2026-01-31`, midnight UTC), or a date and
 * time (`2026-01-31T12:00`, `2026-01-31 12:00:00.250`) with a zone or without one, which is
 * UTC as the trail stores it (never the process's time zone); a fraction past the
 * millisecond gives the next millisecond (not past 9999-12-31T23:59:59.999Z). `undefined`
 * for anything else: another format (`Jan 31 2026`, `12`, which `Date` reads in odd
 * ways), or a day or time that is not on the clock or calendar (`2026-02-30`, `24:00`),
 * which `Date` rolls over into the next.
 */
export function parseIsoInstant(value: string): Date | undefined {
  const match = ISO_INSTANT.exec(value);
  if (!match) return undefined;
  const [, year, month, day, hour = '00', minute = '00', second = '00', fraction = '', zone] = match as unknown as [string, string, string, string, string?, string?, string?, string?, string?];
  const m = Number(month);
  const lastDay = m >= 1 && m <= 12 ? [31, leap(Math.abs(Number(year))) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]! : 0;
  if (Number(day) < 1 || Number(day) > lastDay || Number(hour) > 23 || Number(minute) > 59 || Number(second) > 59) return undefined;
  let offset = 'Z';
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const hours = zone.slice(1, 3);
    const minutes = zone.slice(-2);
    if (Number(hours) > 23 || Number(minutes) > 59) return undefined;
    offset = `${zone[0]}${hours}:${minutes}`;
  }
  const date = new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}.${fraction.padEnd(3, '0').slice(0, 3)}${offset}`);
  if (Number.isNaN(date.getTime())) return undefined;
  // Past the millisecond, the next one: events are stored to the millisecond, so that `from`
  // (>=), `to` and `before` (<) select the same events as the exact instant would.
  // The last millisecond of year 9999 stays itself: the next is year 10000, which no bound takes.
  return /[1-9]/.test(fraction.slice(3)) && date.getTime() < LAST_MILLISECOND ? new Date(date.getTime() + 1) : date;
}

/** 9999-12-31T23:59:59.999Z, the last instant the trail stores. */
const LAST_MILLISECOND = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const leap = (year: number): boolean => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;

/**
 * A time as the driver stores `occurredAt` (SQLite keeps UTC text, others native values).
 * @throws InvalidAuditQueryError for a value that is not a date (text must be ISO 8601, see
 *   {@link parseIsoInstant}), or one outside the years 0001 to 9999 (UTC).
 */
export function occurredAtParam(dataSource: DataSource, value: Date | string, field: string): unknown {
  let date: Date;
  if (value instanceof Date) date = value;
  else if (typeof value === 'string') {
    const parsed = parseIsoInstant(value);
    if (!parsed) throw new InvalidAuditQueryError(field, `is not a valid date: ${JSON.stringify(value)}`);
    date = parsed;
  } else date = new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) throw new InvalidAuditQueryError(field, `is not a valid date: ${value instanceof Date ? 'an invalid Date' : describe(value)}`);
  // The years every database stores (PostgreSQL refuses year 0, and the driver cannot write 10000).
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) throw new InvalidAuditQueryError(field, `is outside the years 0001 to 9999 (UTC): ${JSON.stringify(value)}`);
  const column = dataSource.getMetadata(AuditLogEntity).findColumnWithPropertyName('occurredAt')!;
  return dataSource.driver.preparePersistentValue(date, column);
}

/**
 * SQLite's largest time zone offset (`+14:59`) and a day: text of any offset for an instant
 * on one side of a time sorts on that side of the date this far beyond it.
 */
const SQLITE_TEXT_MARGIN_MS = (15 + 24) * 3_600_000;

/**
 * `e.occurredAt >= :field` or `e.occurredAt < :field`, comparing instants. SQLite keeps
 * text, which an administrator may have rewritten with an offset (`…+09:00`, the same
 * instant) and which then sorts as another time: there it compares `julianday()` values,
 * within a range of the text (the date a day and the largest offset beyond the time, which
 * any offset's text of an instant on that side sorts within) that keeps the
 * `occurred_at` index in use.
 *
 * @throws InvalidAuditQueryError as {@link occurredAtParam}.
 */
export function occurredAtCondition(dataSource: DataSource, op: '>=' | '<', value: Date | string, field: string): { where: string; parameters: Record<string, unknown> } {
  const param = occurredAtParam(dataSource, value, field);
  const sqlite = !POSTGRES_OR_MYSQL.has(String(dataSource.options.type));
  if (!sqlite) return { where: `e.occurredAt ${op} :${field}`, parameters: { [field]: param } };
  const at = value instanceof Date ? value : parseIsoInstant(value)!;
  const edge = new Date(at.getTime() + (op === '<' ? SQLITE_TEXT_MARGIN_MS : -SQLITE_TEXT_MARGIN_MS));
  // Past the years the column holds, text that sorts before (after) all of them.
  const day = edge.getUTCFullYear() < 1 ? '0000' : edge.getUTCFullYear() > 9999 ? '9999-12-32' : edge.toISOString().slice(0, 10);
  return {
    where: `e.occurredAt ${op} :${field}Day AND julianday(e.occurredAt) ${op} julianday(:${field})`,
    parameters: { [field]: param, [`${field}Day`]: day },
  };
}

const POSTGRES_OR_MYSQL: ReadonlySet<string> = new Set(['postgres', 'aurora-postgres', 'mysql', 'mariadb', 'aurora-mysql']);

/** A target type as written by users (`order`) and by the fallback (`Order`). */
export function typeVariants(type: string): string[] {
  return [...new Set([type, lowerCamel(type), type.charAt(0).toUpperCase() + type.slice(1)])];
}

/**
 * The target types an event about `type` may be stored under: its {@link typeVariants}
 * and, when `type` names an entity of `dataSources` in any case (`passwordreset`), that
 * entity's name as the fallback stores it (`PasswordReset`) and in lower camel case
 * (`passwordReset`), as a target typed so claims its changes. A few exact values, so that
 * the target and subject indexes are used on every database (PostgreSQL and SQLite
 * compare text with its case, MariaDB's default collation without). A type that names
 * no entity keeps its {@link typeVariants} only.
 */
export function targetTypes(dataSources: readonly DataSource[], type: string): string[] {
  const types = typeVariants(type);
  const metadata = entityOfType(dataSources, type);
  return metadata ? [...new Set([...types, metadata.name, lowerCamel(metadata.name)])] : types;
}
