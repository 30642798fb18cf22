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
export function idFromKeyValues(metadata: EntityMetadata, given: readonly unknown[]): string | null {
  if (given.length === 0 || given.some((value) => value === undefined || value === null)) return null;
  const values = uuidKeysOf(metadata) ? given.map((value, i) => keyValue(metadata, metadata.primaryColumns[i], value)) : given;
  const keys = secretKeysOf(metadata);
  const plan = keys?.plan(metadata);
  if (values.length === 1) return plan ? keys!.digest(plan[0]!, keyString(values[0])) : keyString(values[0]);
  const part = (value: unknown, i: number): unknown => {
    const label = plan?.[i];
    return label ? keys!.digest(label, keyString(value)) : toJsonSafe(value);
  };
  return JSON.stringify(Object.fromEntries(metadata.primaryColumns.map((column, i) => [column.propertyPath, part(values[i], i)])));
}

/**
 * Whether a primary key column of `metadata` is stored in a native uuid type (cached per
 * entity): PostgreSQL's, CockroachDB's and MariaDB's (10.7+) return a uuid in lower case,
 * whatever case it was given in. SQLite and MySQL store it as text, as given.
 */
const uuidKeys = new WeakMap<EntityMetadata, boolean>();
function uuidKeysOf(metadata: EntityMetadata): boolean {
  let uuid = uuidKeys.get(metadata);
  if (uuid === undefined) uuidKeys.set(metadata, (uuid = metadata.primaryColumns.some((column) => isNativeUuid(metadata, column))));
  return uuid;
}

type ColumnMetadata = EntityMetadata['columns'][number];

function isNativeUuid(metadata: EntityMetadata, column: ColumnMetadata): boolean {
  if (column.type !== 'uuid' && column.generationStrategy !== 'uuid') return false;
  // `connection` in TypeORM 0.3, a getter over `dataSource` in TypeORM 1.
  const driver = (metadata as { connection?: { driver?: { normalizeType?(column: ColumnMetadata): string } } }).connection?.driver;
  try {
    return driver?.normalizeType?.(column) === 'uuid';
  } catch {
    return false;
  }
}

/** A key value as the database stores it: a uuid of a native uuid column in lower case (one row, one id). */
function keyValue(metadata: EntityMetadata, column: ColumnMetadata | undefined, value: unknown): unknown {
  return typeof value === 'string' && column && isNativeUuid(metadata, column) ? value.toLowerCase() : value;
}

/** The id of an instance of `metadata` as a caller gave it (a target, `history()`), as ids are written: a native uuid key in lower case. */
export function givenId(metadata: EntityMetadata, id: string): string {
  if (!uuidKeysOf(metadata)) return id;
  if (metadata.primaryColumns.length === 1) return id.toLowerCase();
  let parsed: unknown;
  try {
    parsed = JSON.parse(id);
  } catch {
    return id;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return id;
  const parts = parsed as Record<string, unknown>;
  for (const column of metadata.primaryColumns) {
    if (column.propertyPath in parts) parts[column.propertyPath] = keyValue(metadata, column, parts[column.propertyPath]);
  }
  return JSON.stringify(parts);
}
