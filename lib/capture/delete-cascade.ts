import type { DataSource, EntityMetadata, ObjectLiteral, QueryRunner, SelectQueryBuilder } from 'typeorm';
import type { ChangeCapture } from './change-capture.js';
import type { CapturedChange } from './change-set.js';
import { entityId, idFromKeyValues } from './entity-identity.js';
import { keyString } from './secret-keys.js';
import { diffSnapshots, selectHidden, snapshotFields } from './entity-snapshot.js';

type ColumnMetadata = EntityMetadata['columns'][number];
type RelationMetadata = EntityMetadata['relations'][number];
type ForeignKeyMetadata = EntityMetadata['foreignKeys'][number];

/** A change to record once the delete it follows from has run. */
export type PendingChange = Omit<CapturedChange, 'at'>;

/** Rows of another table the database changes when a row of an entity is deleted. */
interface Dependent {
  /** The table holding the foreign key: an entity's, or a many-to-many junction. */
  readonly metadata: EntityMetadata;
  readonly foreignKey: ForeignKeyMetadata;
  /** `delete` for `ON DELETE CASCADE`, `set-null` for `ON DELETE SET NULL`. */
  readonly action: 'delete' | 'set-null';
  /** For a junction: the owning many-to-many relation, and whether TypeORM's own `remove()` deletes these links first. */
  readonly link?: { relation: RelationMetadata; removedByOrm: boolean };
}

/** What deleting a row of one entity does elsewhere, and what a read of the row loads: computed once per entity. */
export class DeleteEffects {
  readonly dependents: readonly Dependent[];
  /** The to-one relations whose ids a read of the entity loads. */
  readonly toOne: readonly string[];

  /** Whether a delete of another entity's row can delete or change rows of this one (a foreign key of its own with `ON DELETE CASCADE` or `SET NULL`). */
  readonly cascaded: boolean;

  constructor(dataSource: DataSource, metadata: EntityMetadata) {
    this.toOne = toOneRelations(metadata);
    this.cascaded = metadata.foreignKeys.some((foreignKey) => foreignKey.onDelete === 'CASCADE' || foreignKey.onDelete === 'SET NULL');
    const dependents: Dependent[] = [];
    for (const holder of dataSource.entityMetadatas) {
      for (const foreignKey of holder.foreignKeys) {
        // A single-table-inheritance tree shares one table: a foreign key to any of its entities points at its rows.
        if (inheritanceRoot(foreignKey.referencedEntityMetadata) !== inheritanceRoot(metadata)) continue;
        const action = foreignKey.onDelete === 'CASCADE' ? 'delete' : foreignKey.onDelete === 'SET NULL' ? 'set-null' : undefined;
        if (!action) continue;
        if (holder.tableType !== 'junction') {
          dependents.push({ metadata: holder, foreignKey, action });
          continue;
        }
        const relation = owningRelation(dataSource, holder);
        if (!relation || action !== 'delete') continue;
        // TypeORM's remove() deletes the links of the relations the removed entity has (its own and those it inherits).
        const ownerSide = foreignKey.columns.every((column) => holder.ownerColumns.includes(column));
        const side = ownerSide ? relation : relation.inverseRelation;
        const declared = side !== undefined && metadata.relations.includes(side);
        dependents.push({ metadata: holder, foreignKey, action, link: { relation, removedByOrm: declared } });
      }
    }
    this.dependents = dependents;
  }

  /** Whether a delete through TypeORM's `remove()` changes anything the database does on its own. */
  get cascadesPastRemove(): boolean {
    return this.dependents.some((dependent) => !dependent.link?.removedByOrm);
  }
}

/** The root of the single-table inheritance tree an entity belongs to (the entity itself outside one). */
const inheritanceRoot = (metadata: EntityMetadata): EntityMetadata => (metadata.tableType === 'entity-child' ? metadata.parentEntityMetadata : metadata);

const effects = new WeakMap<EntityMetadata, DeleteEffects>();

/** The delete effects of an entity, computed on first use. */
export function deleteEffectsOf(dataSource: DataSource, metadata: EntityMetadata): DeleteEffects {
  let found = effects.get(metadata);
  if (!found) effects.set(metadata, (found = new DeleteEffects(dataSource, metadata)));
  return found;
}

/** The property paths of an entity's many-to-one and owning one-to-one relations. */
export function toOneRelations(metadata: EntityMetadata): string[] {
  return metadata.relations.filter((relation) => relation.isManyToOne || relation.isOneToOneOwner).map((relation) => relation.propertyPath);
}

const owners = new WeakMap<EntityMetadata, RelationMetadata | null>();

/** The owning many-to-many relation a junction table belongs to (looked up once per junction). */
export function owningRelation(dataSource: DataSource, junction: EntityMetadata): RelationMetadata | undefined {
  let owner = owners.get(junction);
  if (owner === undefined) {
    owner = dataSource.entityMetadatas.flatMap((metadata) => metadata.manyToManyRelations).find((relation) => relation.isOwning && relation.junctionEntityMetadata === junction) ?? null;
    owners.set(junction, owner);
  }
  return owner ?? undefined;
}

/** A junction row's link: the owning row (its entity and id) and the id of the row it is linked to. */
export interface JunctionLink {
  entity: EntityMetadata;
  owner: string;
  related: string;
}

/**
 * The links of junction `rows` of the owning many-to-many `relation` (`value`: a junction
 * column's value in a row), with how many of them name no row (`unknown`). A junction holds
 * the rows' keys, unless its `@JoinTable` joins on other columns (`referencedColumnName` a
 * unique column that is not the key): the rows are then read by those values, on `runner`
 * (the write's transaction), for their keys. A relation of a single-table inheritance
 * entity with children reads its owning rows too: each is of the child entity its
 * discriminator names, as any row read through the base is recorded. A link whose row is
 * not found is not recorded one by one: the caller records it as a partial change, counted.
 */
export async function junctionLinks(
  runner: QueryRunner,
  relation: RelationMetadata,
  rows: readonly ObjectLiteral[],
  value: (column: ColumnMetadata, row: ObjectLiteral) => unknown,
): Promise<{ links: JunctionLink[]; unknown: number }> {
  const junction = relation.junctionEntityMetadata!;
  const owners = await linkedRows(runner, relation.entityMetadata, junction.ownerColumns, rows, value, true);
  const related = await linkedRows(runner, relation.inverseEntityMetadata, junction.inverseColumns, rows, value, false);
  const links: JunctionLink[] = [];
  rows.forEach((_, i) => {
    const owner = owners[i];
    const other = related[i];
    if (owner && other) links.push({ entity: owner.entity, owner: owner.id, related: other.id });
  });
  return { links, unknown: rows.length - links.length };
}

/** A row a junction's link points at: the entity it is of, and its id. */
interface LinkedRow {
  entity: EntityMetadata;
  id: string;
}

/** Rows read per statement by {@link linkedRows}. */
const LINKED_ROWS_PER_READ = 200;

/**
 * The row of `metadata` each junction row's `columns` point at (undefined when none is
 * found); `byKind`: read as the child entity it is of, when `metadata` has children.
 */
async function linkedRows(
  runner: QueryRunner,
  metadata: EntityMetadata,
  columns: readonly ColumnMetadata[],
  rows: readonly ObjectLiteral[],
  value: (column: ColumnMetadata, row: ObjectLiteral) => unknown,
  byKind: boolean,
): Promise<Array<LinkedRow | undefined>> {
  const referenced = columns.map((column) => column.referencedColumn!);
  const values = rows.map((row) => columns.map((column) => value(column, row)));
  const primary = metadata.primaryColumns;
  const byKey = primary.length === referenced.length && primary.every((column) => referenced.includes(column));
  if (byKey && !(byKind && metadata.childEntityMetadatas.length)) {
    return values.map((row) => {
      const id = idFromKeyValues(metadata, primary.map((column) => row[referenced.indexOf(column)]));
      return id === null ? undefined : { entity: metadata, id };
    });
  }
  const lookup = (given: readonly unknown[]): string => JSON.stringify(given.map(keyString));
  const wanted = new Map<string, readonly unknown[]>();
  for (const row of values) if (row.every((v) => v !== undefined && v !== null)) wanted.set(lookup(row), row);
  const found = new Map<string, LinkedRow>();
  const alias = 'audit_linked';
  const escape = (name: string) => runner.connection.driver.escape(name);
  const all = [...wanted.values()];
  // Read in slices: one OR term per row, and SQLite refuses an expression deeper than 1,000.
  for (let from = 0; from < all.length; from += LINKED_ROWS_PER_READ) {
    const parameters: Record<string, unknown> = {};
    const where = all
      .slice(from, from + LINKED_ROWS_PER_READ)
      .map((row, i) => `(${referenced.map((c, j) => ((parameters[`audit_l${i}_${j}`] = row[j]), `${escape(alias)}.${escape(c.databaseName)} = :audit_l${i}_${j}`)).join(' AND ')})`)
      .join(' OR ');
    for (const entity of await runner.manager.createQueryBuilder(metadata.target, alias).callListeners(false).withDeleted().where(where, parameters).getMany()) {
      const id = entityId(metadata, entity);
      // Under single-table inheritance TypeORM loads a row as the entity its discriminator names.
      const child = byKind ? metadata.childEntityMetadatas.find((candidate) => candidate.target === entity.constructor) : undefined;
      if (id !== null) found.set(lookup(referenced.map((column) => column.getEntityValue(entity) as unknown)), { entity: child ?? metadata, id });
    }
  }
  return values.map((row) => found.get(lookup(row)));
}

/**
 * The rows one flush of TypeORM's `remove()` deletes itself (several entities given, or the
 * loaded children a `cascade` relation removes with their parent), by table: TypeORM reports
 * each, so a cascade read of another of them leaves them out.
 */
export class RemovedRows {
  private readonly rows = new Map<string, ObjectLiteral[]>();

  add(metadata: EntityMetadata, row: ObjectLiteral): void {
    const rows = this.rows.get(metadata.tablePath);
    if (rows) rows.push(row);
    else this.rows.set(metadata.tablePath, [row]);
  }

  /** The rows removed from the table of `metadata`. */
  of(metadata: EntityMetadata): readonly ObjectLiteral[] | undefined {
    return this.rows.get(metadata.tablePath);
  }
}

/** Cascades of cascades are followed this deep at most (MySQL and MariaDB stop at 15). */
const MAX_DEPTH = 15;

/**
 * What the database does to other rows when rows of an entity are deleted, read before
 * the delete in its transaction: the rows it deletes (`ON DELETE CASCADE`, and their own
 * cascades), the rows whose key it sets to null (`ON DELETE SET NULL`) and the many-to-many
 * links it removes (recorded on the owning side as `removed`). At most `bound` rows are
 * read in all; each table cut short gets a partial change with the count of rows not read.
 */
export class DeleteCascade {
  private readonly changes: PendingChange[] = [];
  /** Rows known to be deleted: a SET NULL of one of them is no change of its own. */
  private readonly deleted = new Set<string>();
  private budget: number;

  private constructor(
    private readonly capture: ChangeCapture,
    private readonly dataSource: DataSource,
    private readonly runner: QueryRunner,
    bound: number,
    /** Through TypeORM's `remove()`, which deletes the links of the relations it knows first. */
    private readonly byRemove: boolean,
    /** Rows TypeORM removes itself in the same flush: not read. */
    private readonly removed: RemovedRows | undefined,
  ) {
    this.budget = bound;
  }

  /**
   * The changes the deletion of `rows` (loaded with every column) of `metadata` will cause,
   * to record after the delete has run. `byRemove`: the delete is TypeORM's `remove()`;
   * `removed`: the rows that flush removes (TypeORM reports them, they are not read).
   */
  static async read(
    capture: ChangeCapture,
    dataSource: DataSource,
    runner: QueryRunner,
    metadata: EntityMetadata,
    rows: readonly ObjectLiteral[],
    byRemove: boolean,
    removed?: RemovedRows,
  ): Promise<PendingChange[]> {
    const cascade = new DeleteCascade(capture, dataSource, runner, capture.maxCriteriaRows, byRemove, removed);
    for (const row of rows) cascade.deleted.add(key(metadata.name, entityId(metadata, row)));
    await cascade.follow(metadata, rows, 0);
    return cascade.changes.filter(
      (change) => !(change.operation === 'update' && !change.partial && cascade.deleted.has(key(change.entity, change.id)) && !isLinksOnly(change)),
    );
  }

  private async follow(metadata: EntityMetadata, rows: readonly ObjectLiteral[], depth: number): Promise<void> {
    if (rows.length === 0 || depth > MAX_DEPTH) return;
    const dataSource = this.dataSource;
    for (const dependent of deleteEffectsOf(dataSource, metadata).dependents) {
      if (dependent.link) {
        if (!(this.byRemove && depth === 0 && dependent.link.removedByOrm)) await this.links(dependent, rows);
        continue;
      }
      const fields = this.capture.trackedFields(dependent.metadata);
      if (!fields) continue;
      const found = await this.read(dependent, rows, deleteEffectsOf(dataSource, dependent.metadata).toOne);
      if (!found) continue;
      const holder = dependent.metadata;
      if (dependent.action === 'delete') {
        const fresh = found.filter((row) => {
          const id = key(holder.name, entityId(holder, row));
          if (this.deleted.has(id)) return false;
          this.deleted.add(id);
          return true;
        });
        for (const row of fresh) {
          this.changes.push({ entity: holder.name, id: entityId(holder, row), operation: 'delete', fields: snapshotFields(fields.snapshot(row), 'from') });
        }
        await this.follow(holder, fresh, depth + 1);
      } else {
        const columns = fields.columns.filter((column) => dependent.foreignKey.columns.includes(column));
        for (const row of found) {
          const changed = diffSnapshots(fields.snapshot(row, columns), {});
          if (Object.keys(changed).length) this.changes.push({ entity: holder.name, id: entityId(holder, row), operation: 'update', fields: changed });
        }
      }
    }
  }

  /** Links of `rows` in a junction table, recorded as removed on each owning row. */
  private async links(dependent: Dependent, rows: readonly ObjectLiteral[]): Promise<void> {
    const { relation } = dependent.link!;
    if (!this.capture.trackedFields(relation.entityMetadata)) return;
    const found = await this.read(dependent, rows);
    if (!found) return;
    const { links, unknown } = await junctionLinks(this.runner, relation, found, (column, row) => row[column.databaseName]);
    const removed = new Map<string, { entity: string; owner: string; ids: string[] }>();
    for (const { entity, owner, related } of links) {
      if (!this.capture.trackedFields(entity)) continue;
      const ofOwner = removed.get(key(entity.name, owner));
      if (ofOwner) ofOwner.ids.push(related);
      else removed.set(key(entity.name, owner), { entity: entity.name, owner, ids: [related] });
    }
    for (const { entity, owner, ids } of removed.values()) {
      this.changes.push({ entity, id: owner, operation: 'update', fields: { [relation.propertyPath]: { added: [], removed: ids } } });
    }
    if (unknown) this.changes.push({ entity: relation.entityMetadata.name, id: null, operation: 'update', fields: {}, partial: true, count: unknown });
  }

  /**
   * The rows of a dependent table whose foreign key points at `rows`, within the budget
   * left: entities with their to-one relation ids, junction rows raw (by column name).
   * Past the budget, records a partial change counting the rows not read.
   */
  private async read(dependent: Dependent, rows: readonly ObjectLiteral[], toOne?: readonly string[]): Promise<ObjectLiteral[] | undefined> {
    const { foreignKey } = dependent;
    const keys = rows.map((row) => foreignKey.referencedColumns.map((column) => column.getEntityValue(row) as unknown));
    const usable = keys.filter((values) => values.every((value) => value !== undefined && value !== null));
    if (usable.length === 0) return undefined;
    const query = () => this.matching(dependent, usable, toOne);
    let found: ObjectLiteral[] = [];
    if (this.budget > 0) {
      found = toOne ? await query().limit(this.budget + 1).getMany() : await this.rawJunctionRows(query().limit(this.budget + 1), dependent.metadata);
    }
    if (found.length <= this.budget && this.budget > 0) {
      this.budget -= found.length;
      return found;
    }
    const total = await query().getCount();
    const kept = found.slice(0, this.budget);
    this.budget = 0;
    if (total > kept.length) {
      const link = dependent.link?.relation;
      this.changes.push({
        entity: link ? link.entityMetadata.name : dependent.metadata.name,
        id: null,
        operation: dependent.action === 'delete' && !link ? 'delete' : 'update',
        fields: {},
        partial: true,
        count: total - kept.length,
      });
    }
    return kept;
  }

  /** A SELECT of the dependent rows whose foreign key holds one of `keys`, in the deleting transaction. */
  private matching(dependent: Dependent, keys: readonly unknown[][], toOne?: readonly string[]): SelectQueryBuilder<ObjectLiteral> {
    const { metadata, foreignKey } = dependent;
    const alias = 'audit_cascade';
    const escape = (name: string) => this.dataSource.driver.escape(name);
    const column = (c: ColumnMetadata) => `${escape(alias)}.${escape(c.databaseName)}`;
    // Not the app's loads: its afterLoad hooks are not called for them.
    const query = this.runner.manager.createQueryBuilder(metadata.target, alias).callListeners(false);
    const parameters: Record<string, unknown> = {};
    let where: string;
    if (foreignKey.columns.length === 1) {
      where = `${column(foreignKey.columns[0]!)} IN (:...audit_keys)`;
      parameters['audit_keys'] = keys.map((values) => values[0]);
    } else {
      where = keys
        .map((values, i) => `(${foreignKey.columns.map((c, j) => ((parameters[`audit_k${i}_${j}`] = values[j]), `${column(c)} = :audit_k${i}_${j}`)).join(' AND ')})`)
        .join(' OR ');
    }
    const skipped = dependent.link ? undefined : this.removed?.of(metadata);
    if (skipped?.length) {
      const key = metadata.primaryColumns;
      const rows = skipped.map((row, i) => `(${key.map((c, j) => ((parameters[`audit_s${i}_${j}`] = c.getEntityValue(row)), `${column(c)} = :audit_s${i}_${j}`)).join(' AND ')})`);
      where = `(${where}) AND NOT (${rows.join(' OR ')})`;
    }
    query.where(where, parameters);
    if (toOne) {
      // Rows read as entities: with their `select: false` columns, as any row the module reads.
      const hidden = this.capture.trackedFields(metadata)?.hidden;
      if (hidden) selectHidden(query, hidden);
      query.withDeleted().loadAllRelationIds({ relations: [...toOne], disableMixedMap: true });
    }
    return query;
  }

  private async rawJunctionRows(query: SelectQueryBuilder<ObjectLiteral>, junction: EntityMetadata): Promise<ObjectLiteral[]> {
    const escape = (name: string) => this.dataSource.driver.escape(name);
    query.select([]);
    junction.columns.forEach((column, i) => query.addSelect(`${escape(query.alias)}.${escape(column.databaseName)}`, `c${i}`));
    const raw = await query.getRawMany<Record<string, unknown>>();
    return raw.map((row) => Object.fromEntries(junction.columns.map((column, i) => [column.databaseName, row[`c${i}`]])));
  }
}

const key = (entity: string, id: string | null): string => `${entity}\u0000${id ?? ''}`;

const isLinksOnly = (change: PendingChange): boolean => Object.values(change.fields).every((value) => 'added' in value);
