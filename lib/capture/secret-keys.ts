import { createHash, createHmac, type KeyObject } from 'node:crypto';
import type { DataSource, EntityMetadata } from 'typeorm';
import { toJsonSafe } from '../events/json-safe.js';
import type { Redactor } from '../events/redaction.js';
import { fieldName } from './field-name.js';

type ColumnMetadata = EntityMetadata['columns'][number];

/** Entity names whose secret fields are kept, at most. */
const MAX_ENTITY_NAMES = 10_000;

/** What a stored secret key value starts with without a key: `sha256:` + base64url(SHA-256). */
export const KEY_DIGEST_PREFIX = 'sha256:';
/** What it starts with under the pseudonymisation key: `hmac:` + base64url(HMAC-SHA-256). */
export const KEYED_KEY_DIGEST_PREFIX = 'hmac:';

/** Whether `value` is already a stored secret key value (given back from an event). */
const isDigest = (value: string): boolean => value.startsWith(KEY_DIGEST_PREFIX) || value.startsWith(KEYED_KEY_DIGEST_PREFIX);

/**
 * Primary keys whose column is named like a secret (by the `redact` rules: a password
 * reset `token`, an `apiKey`), and the join columns that refer to one: their values are
 * never stored, a digest of `<Entity>.<property>:<value>` is, wherever an entity id is
 * (`changes[].id`, `target_id`, `audit_subject`, the journal, relation fields). With one
 * pseudonymisation key, the digest is an HMAC under a key derived from it; otherwise a
 * plain SHA-256, which a guess of the value can be checked against.
 * Decided once per column and entity.
 */
export class SecretKeys {
  private readonly key: Buffer | undefined;
  /** Column → the label of the secret key it holds (`null`: none). */
  private readonly labels = new WeakMap<ColumnMetadata, string | null>();
  /** Entity → the label of each primary column (`null`: no secret part). */
  private readonly plans = new WeakMap<EntityMetadata, ReadonlyArray<string | null> | null>();

  constructor(
    private readonly redactor: Redactor,
    key: Buffer | KeyObject | undefined,
  ) {
    // A key of its own, so that no key value's digest is ever an actor's pseudonym.
    this.key = key ? createHmac('sha256', key).update('nestjs-system-audit:secret-primary-key', 'utf8').digest() : undefined;
  }

  /** The label of each primary column of `metadata` whose values are secret, or `null` when none is. */
  plan(metadata: EntityMetadata): ReadonlyArray<string | null> | null {
    let plan = this.plans.get(metadata);
    if (plan === undefined) {
      const labels = metadata.primaryColumns.map((column) => this.label(column));
      plan = labels.some((label) => label !== null) ? labels : null;
      this.plans.set(metadata, plan);
    }
    return plan;
  }

  /**
   * `<Entity>.<property>` of the secret key a column holds: a primary column named like a
   * secret, or a join column referring to one or to any other column named like a secret
   * (labelled as the column it refers to, so that a relation's value is the referred
   * entity's stored id, or that column's digest). `null` for any other column.
   */
  label(column: ColumnMetadata): string | null {
    let label = this.labels.get(column);
    if (label === undefined) {
      this.labels.set(column, null); // a column referring back to itself ends here
      const referenced = column.referencedColumn;
      if (referenced && referenced !== column) {
        label = this.label(referenced) ?? (this.isSecretColumn(referenced) ? labelOf(referenced) : null);
      } else {
        label = null;
      }
      if (label === null && column.isPrimary && this.isSecretColumn(column)) label = labelOf(column);
      this.labels.set(column, label);
    }
    return label;
  }

  /**
   * Whether a column's values are secret: its property name (or path, in an embedded),
   * or its column name in the database, is named like a secret by the `redact` rules.
   */
  isSecretColumn(column: ColumnMetadata): boolean {
    const redactor = this.redactor;
    return (
      redactor.isSecret(column.propertyName) ||
      redactor.isSecret(column.propertyPath) ||
      redactor.isSecret(column.databaseName) ||
      redactor.isSecret(column.databaseNameWithoutPrefixes)
    );
  }

  /** The data sources whose entities' fields are masked by their columns (see {@link secretFields}). */
  private readonly sources = new Set<DataSource>();
  /** Entity name → its secret fields, once every data source above knew its entities; bounded. */
  private readonly fieldsOf = new Map<string, ReadonlySet<string> | null>();

  /**
   * The fields of the entity named `entity` (in any case, as a target's type names it) in
   * the module's data sources whose values are masked whatever their field name: those of
   * columns secret by their database name only, by their own property name inside an
   * embedded (`card.cvv`), and the entity's own secret key columns; not those referring
   * to a secret column, which hold its digest. `undefined` when none.
   */
  secretFields(entity: string): ReadonlySet<string> | undefined {
    let fields = this.fieldsOf.get(entity);
    if (fields === undefined) {
      const lower = entity.toLowerCase();
      const found = new Set<string>();
      let known = true;
      for (const dataSource of this.sources) {
        if (!dataSource.isInitialized) known = false;
        else for (const metadata of dataSource.entityMetadatas) if (metadata.name.toLowerCase() === lower) this.collect(metadata, found);
      }
      fields = found.size ? found : null;
      // Names come from callers too (`log()`): a bounded number is kept.
      if (known && this.fieldsOf.size < MAX_ENTITY_NAMES && entity.length <= 256) this.fieldsOf.set(entity, fields);
    }
    return fields ?? undefined;
  }

  /** Adds the secret fields of `metadata` (see {@link secretFields}) to `fields`. */
  private collect(metadata: EntityMetadata, fields: Set<string>): void {
    for (const column of metadata.columns) {
      // A column referring to a secret one holds its digest (a join column named after it, `resetToken`): not masked.
      const refers = column.referencedColumn !== undefined && column.referencedColumn !== column;
      if (this.label(column) !== null ? refers : !this.isSecretColumn(column)) continue;
      fields.add(fieldName(column));
      fields.add(column.propertyPath);
    }
  }

  /** Makes `dataSource`'s entities' fields masked by their columns. */
  watch(dataSource: DataSource): void {
    this.sources.add(dataSource);
    this.fieldsOf.clear();
  }

  /** Stops doing so. */
  unwatch(dataSource: DataSource): void {
    this.sources.delete(dataSource);
    this.fieldsOf.clear();
  }

  /** The stored form of one secret key value. */
  digest(label: string, value: string): string {
    const message = `${label}:${value}`;
    return this.key
      ? KEYED_KEY_DIGEST_PREFIX + createHmac('sha256', this.key).update(message, 'utf8').digest('base64url')
      : KEY_DIGEST_PREFIX + createHash('sha256').update(message, 'utf8').digest('base64url');
  }

  /**
   * The id of an instance of `metadata` as stored, from the id a caller gave (`{ type, id }`
   * of `log()`, `@Audited`, `history()`, `find()`): a secret key's value is digested, a value
   * already digested kept; for a composite key (its JSON form), each secret part.
   */
  storedId(metadata: EntityMetadata, id: string): string {
    const plan = this.plan(metadata);
    if (!plan) return id;
    if (plan.length === 1) return isDigest(id) ? id : this.digest(plan[0]!, id);
    let given: unknown;
    try {
      given = JSON.parse(id);
    } catch {
      return id;
    }
    if (given === null || typeof given !== 'object' || Array.isArray(given)) return id;
    const parts: Array<[string, unknown]> = [];
    for (const [i, column] of metadata.primaryColumns.entries()) {
      const value = (given as Record<string, unknown>)[column.propertyPath];
      if (value === undefined || value === null) return id;
      const label = plan[i];
      parts.push([column.propertyPath, label && !(typeof value === 'string' && isDigest(value)) ? this.digest(label, keyString(value)) : value]);
    }
    return JSON.stringify(Object.fromEntries(parts));
  }
}

/** The label of a column's values: `<Entity>.<property>`. */
const labelOf = (column: ColumnMetadata): string => `${column.entityMetadata.name}.${column.propertyPath}`;

/** One key value as a string (as the id of a single-column key is written). */
export function keyString(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object' && value !== null) return JSON.stringify(toJsonSafe(value));
  return String(value);
}

/** The secret keys of each captured data source, by the module that captures it. */
const byDataSource = new WeakMap<DataSource, SecretKeys>();

/** Makes the ids of `dataSource`'s entities, and their secret fields, follow `keys`. */
export function useSecretKeys(dataSource: DataSource, keys: SecretKeys): void {
  byDataSource.set(dataSource, keys);
  keys.watch(dataSource);
}

/** Stops doing so, when `keys` are the data source's. */
export function dropSecretKeys(dataSource: DataSource, keys: SecretKeys): void {
  if (byDataSource.get(dataSource) === keys) byDataSource.delete(dataSource);
  keys.unwatch(dataSource);
}

/** The secret keys that apply to `metadata`'s ids, if its data source is captured. */
export function secretKeysOf(metadata: EntityMetadata): SecretKeys | undefined {
  return byDataSource.get(metadata.connection);
}
