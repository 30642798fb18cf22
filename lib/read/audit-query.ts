import type { DataSource, SelectQueryBuilder } from 'typeorm';
import { PSEUDONYM_PREFIX, type ActorPseudonymizer } from '../events/actor-pseudonyms.js';
import { lowerCamel } from '../events/audit-event.builder.js';
import { entityOfType } from '../events/audit-target.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditTarget } from '../interfaces/audit-event.interface.js';
import type { AuditExportQuery, AuditTargetInput } from '../interfaces/audit-service.interface.js';
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
/** What `find()` takes besides the filters. */
const PAGING = new Set(['limit', 'cursor']);

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
  const actions = query.action === undefined ? [] : Array.isArray(query.action) ? query.action : [query.action];
  const typesOf = (type: string): string[] => scope.targetTypes?.(type) ?? typeVariants(type);
  if (actions.some((action) => typeof action !== 'string')) throw new InvalidAuditQueryError('action', 'must be a string or an array of strings');
  if (actions.length) qb.andWhere('e.action IN (:...actions)', { actions });
  const actorType = query.actorType ?? query.actor?.type;
  const given = query.actorId ?? query.actor?.id;
  const actorId = given === undefined ? undefined : storedActorId(String(given), actorType, scope.pseudonymizer);
  if (actorId === null) qb.andWhere('1 = 0'); // a clear id whose key is gone: no event maps from it
  else if (actorId !== undefined) qb.andWhere('e.actorId = :actorId', { actorId });
  if (actorType !== undefined) qb.andWhere('e.actorType = :actorType', { actorType });
  if (query.target !== undefined) {
    const target = scope.resolveTarget(query.target, 'target');
    qb.andWhere('e.targetType IN (:...targetTypes)', { targetTypes: typesOf(target.type) }).andWhere('e.targetId = :targetId', { targetId: target.id });
  }
  if (query.targetType !== undefined) qb.andWhere('e.targetType IN (:...filterTypes)', { filterTypes: typesOf(query.targetType) });
  if (query.source !== undefined) qb.andWhere('e.source = :source', { source: query.source });
  if (query.outcome !== undefined) qb.andWhere('e.outcome = :outcome', { outcome: query.outcome });
  if (query.kind !== undefined) qb.andWhere('e.kind = :kind', { kind: query.kind });
  if (query.requestId !== undefined) qb.andWhere('e.requestId = :requestId', { requestId: query.requestId });
  if (query.from !== undefined) qb.andWhere('e.occurredAt >= :from', { from: occurredAtParam(scope.dataSource, query.from, 'from') });
  if (query.to !== undefined) qb.andWhere('e.occurredAt < :to', { to: occurredAtParam(scope.dataSource, query.to, 'to') });
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

/**
 * A time as the driver stores `occurredAt` (SQLite keeps UTC text, others native values).
 * @throws InvalidAuditQueryError for a value that is not a date, or one outside the years 0001 to 9999 (UTC).
 */
export function occurredAtParam(dataSource: DataSource, value: Date | string, field: string): unknown {
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) throw new InvalidAuditQueryError(field, `is not a valid date: ${JSON.stringify(value)}`);
  // The years every database stores (PostgreSQL refuses year 0, and the driver cannot write 10000).
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) throw new InvalidAuditQueryError(field, `is outside the years 0001 to 9999 (UTC): ${JSON.stringify(value)}`);
  const column = dataSource.getMetadata(AuditLogEntity).findColumnWithPropertyName('occurredAt')!;
  return dataSource.driver.preparePersistentValue(date, column);
}

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
