import type { DataSource, EntityMetadata, ObjectLiteral } from 'typeorm';
import { entityId, givenId } from '../capture/entity-identity.js';
import { secretKeysOf } from '../capture/secret-keys.js';
import type { AuditTarget } from '../interfaces/audit-event.interface.js';
import type { AuditTargetInput } from '../interfaces/audit-service.interface.js';

/**
 * `{ type, id }` as is (a numeric id as a string), or an entity instance of one of
 * `dataSources` as its entity name and primary key. Throws an `Error` saying what is missing.
 */
export function resolveTarget(dataSources: readonly DataSource[], target: AuditTargetInput): AuditTarget {
  if (target === null || typeof target !== 'object') throw new Error('must be { type, id } or an entity instance');
  const constructor = (target as ObjectLiteral).constructor as (new () => unknown) | undefined;
  const dataSource = constructor && constructor !== Object ? dataSources.find((candidate) => candidate.hasMetadata(constructor)) : undefined;
  if (constructor && dataSource) {
    const metadata = dataSource.getMetadata(constructor);
    const id = entityId(metadata, target as ObjectLiteral);
    if (id === null) throw new Error(`is a ${metadata.name} without a primary key value (save it first)`);
    return { type: metadata.name, id };
  }
  const { type, id } = target as { type?: unknown; id?: unknown };
  if (typeof type !== 'string' || type.length === 0) throw new Error('needs a non-empty string "type"');
  if ((typeof id !== 'string' && typeof id !== 'number' && typeof id !== 'bigint') || String(id).length === 0) {
    throw new Error('needs an "id" (string or number)');
  }
  return { type, id: storedTargetId(dataSources, type, String(id)) };
}

/** The id as stored: for an entity type whose key is secret, its digest; a uuid key in lower case; any other id as it is. */
function storedTargetId(dataSources: readonly DataSource[], type: string, given: string): string {
  const metadata = entityOfType(dataSources, type);
  if (!metadata) return given;
  const id = givenId(metadata, given);
  return secretKeysOf(metadata)?.storedId(metadata, id) ?? id;
}

/**
 * The entity a target type names, in any case (`passwordreset` names `PasswordReset`),
 * in the first of `dataSources` that has one; `null` for a type that names no entity.
 */
export function entityOfType(dataSources: readonly DataSource[], type: string): EntityMetadata | null {
  for (const dataSource of dataSources) {
    const metadata = entityNamed(dataSource, type);
    if (metadata) return metadata;
  }
  return null;
}

/** Entity names looked up per data source (`null`: none), up to a bound. */
const namedIn = new WeakMap<DataSource, Map<string, EntityMetadata | null>>();
const MAX_NAMES = 10_000;

/**
 * The entity of `dataSource` named `type`, in any case (as a target's type claims changes:
 * `passwordReset`, as `history()` takes it, or `passwordreset`). An exact match first; of
 * entities whose names differ in case only, one whose key is secret, so that its id is
 * never stored in the clear.
 */
function entityNamed(dataSource: DataSource, type: string): EntityMetadata | null {
  let names = namedIn.get(dataSource);
  let metadata = names?.get(type);
  if (metadata !== undefined) return metadata;
  const lower = type.toLowerCase();
  const candidates = dataSource.entityMetadatas.filter((candidate) => candidate.name.toLowerCase() === lower);
  metadata =
    candidates.find((candidate) => candidate.name === type) ??
    candidates.find((candidate) => secretKeysOf(candidate)?.plan(candidate)) ??
    candidates[0] ??
    null;
  // Only once the data source knows its entities; types come from callers: a bounded number is kept.
  if (dataSource.isInitialized) {
    if (!names) namedIn.set(dataSource, (names = new Map()));
    if (names.size < MAX_NAMES && type.length <= 256) names.set(type, metadata);
  }
  return metadata;
}
