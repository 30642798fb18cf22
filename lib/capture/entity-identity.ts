import type { EntityMetadata, ObjectLiteral } from 'typeorm';
import { toJsonSafe } from '../events/json-safe.js';
import { keyString, secretKeysOf } from './secret-keys.js';

/**
 * The id of an entity instance as a string: the primary key's value, or for a
 * composite key a JSON object of its columns. `null` when the key is not known.
 * A key column named like a secret holds its value's digest instead (`SecretKeys`).
 */
export function entityId(metadata: EntityMetadata, entity: ObjectLiteral | undefined | null): string | null {
  if (!entity) return null;
  const primary = metadata.primaryColumns;
  if (primary.length === 0) return null;
  return idFromKeyValues(metadata, primary.map((column) => column.getEntityValue(entity, true) as unknown));
}

/**
 * The id string of an entity from its primary key values, in the order of
 * `metadata.primaryColumns`, the same string `entityId()` gives for the entity.
 */
export function idFromKeyValues(metadata: EntityMetadata, values: readonly unknown[]): string | null {
  if (values.length === 0 || values.some((value) => value === undefined || value === null)) return null;
  const keys = secretKeysOf(metadata);
  const plan = keys?.plan(metadata);
  if (values.length === 1) return plan ? keys!.digest(plan[0]!, keyString(values[0])) : keyString(values[0]);
  const part = (value: unknown, i: number): unknown => {
    const label = plan?.[i];
    return label ? keys!.digest(label, keyString(value)) : toJsonSafe(value);
  };
  return JSON.stringify(Object.fromEntries(metadata.primaryColumns.map((column, i) => [column.propertyPath, part(values[i], i)])));
}
