import { isDeepStrictEqual } from 'node:util';
import type { EntityMetadata, ObjectLiteral, SelectQueryBuilder } from 'typeorm';

type ColumnMetadata = EntityMetadata['columns'][number];
type RelationMetadata = EntityMetadata['relations'][number];
import { toJsonSafe } from '../events/json-safe.js';
import { fieldName, isDerivedJoinColumn } from './field-name.js';
import { keyString, type SecretKeys } from './secret-keys.js';

export { fieldName };

/** Field name → JSON-safe value. */
export type Snapshot = Record<string, unknown>;

/**
 * The fields of an entity the audit trail follows: every stored column (a to-one
 * relation's join column is recorded under the relation's name, as the related id),
 * less the excluded ones.
 */
export class TrackedFields {
  readonly columns: ColumnMetadata[];
  /** The followed join columns TypeORM derives from to-one relations (read from the relation's object). */
  readonly joinColumns: ColumnMetadata[];
  /** The followed columns TypeORM's default selection leaves out (`select: false`): the module's reads select them. */
  readonly hidden: ColumnMetadata[];
  /**
   * The followed columns whose values are never captured, with their label: a join column
   * referring to a secret key or to another column named like a secret (its value is
   * stored digested), and a secret key column of the entity itself (captured digested too,
   * so that a change of it is seen; its field is stored masked, see `SecretKeys.secretFields()`).
   */
  private readonly secrets = new Map<ColumnMetadata, string>();

  constructor(
    readonly metadata: EntityMetadata,
    excluded: ReadonlySet<string>,
    private readonly keys?: SecretKeys,
  ) {
    // Update dates and versions change with every write: they say nothing a reviewer needs.
    this.columns = metadata.columns.filter(
      (column) =>
        (!column.isVirtual || isDerivedJoinColumn(column)) &&
        !column.isVirtualProperty &&
        !column.isUpdateDate &&
        !column.isVersion &&
        !excluded.has(column.propertyPath) &&
        !excluded.has(fieldName(column)),
    );
    this.joinColumns = this.columns.filter(isDerivedJoinColumn);
    this.hidden = this.columns.filter((column) => !column.isSelect);
    for (const column of this.columns) {
      const label = keys?.label(column);
      if (label) this.secrets.set(column, label);
    }
  }

  /** Every followed field of `entity`; undefined values are left out (unknown, not null). */
  snapshot(entity: ObjectLiteral, columns: readonly ColumnMetadata[] = this.columns): Snapshot {
    const values: Snapshot = {};
    for (const column of columns) {
      const value = column.getEntityValue(entity) as unknown;
      if (value === undefined) continue;
      const label = value === null || !this.secrets.size ? undefined : this.secrets.get(column);
      values[fieldName(column)] = label ? this.keys!.digest(label, keyString(value)) : toJsonSafe(value);
    }
    return values;
  }

  /**
   * The followed columns TypeORM reports as changed by a save: its changed columns and
   * the join columns of its changed relations, less those it never updates
   * (`@Column({ update: false })`: the value changed in memory is not written).
   */
  changed(columns: readonly ColumnMetadata[], relations: readonly RelationMetadata[]): ColumnMetadata[] {
    const candidates = new Set([...columns, ...relations.flatMap((relation) => relation.joinColumns)]);
    return this.columns.filter((column) => column.isUpdate && candidates.has(column));
  }
}

/** Adds `columns` (kept out of default reads by `select: false`) to what `query` reads of its main alias; returns it. */
export function selectHidden<T extends ObjectLiteral>(query: SelectQueryBuilder<T>, columns: readonly ColumnMetadata[]): SelectQueryBuilder<T> {
  for (const column of columns) query.addSelect(`${query.alias}.${column.propertyPath}`);
  return query;
}

/** `{ name: { from, to } }` for every field whose value differs. */
export function diffSnapshots(before: Snapshot, after: Snapshot): Record<string, { from: unknown; to: unknown }> {
  const fields: Record<string, { from: unknown; to: unknown }> = {};
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const from = before[name] ?? null;
    const to = after[name] ?? null;
    if (!isDeepStrictEqual(from, to)) fields[name] = { from, to };
  }
  return fields;
}

/** `{ name: { from: null, to } }` for an insert, `{ name: { from, to: null } }` for a delete. */
export function snapshotFields(snapshot: Snapshot, side: 'to' | 'from'): Record<string, { from: unknown; to: unknown }> {
  return Object.fromEntries(
    Object.entries(snapshot).map(([name, value]) => [name, side === 'to' ? { from: null, to: value } : { from: value, to: null }]),
  );
}
