import type { DataSource, ObjectLiteral } from 'typeorm';
import { entityId } from '../capture/entity-identity.js';
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
  return { type, id: String(id) };
}
