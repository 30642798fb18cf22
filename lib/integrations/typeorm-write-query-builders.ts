import type { DataSource, EntityMetadata, ObjectLiteral, QueryBuilder, QueryRunner, SelectQueryBuilder } from 'typeorm';
import { isInsideQueryBuilder, runInsideWrite } from '../context/async-frame.js';

/**
 * Patches: `execute` on the prototypes of TypeORM's `UpdateQueryBuilder`,
 * `DeleteQueryBuilder`, `SoftDeleteQueryBuilder` (soft delete and restore) and
 * `InsertQueryBuilder`, of the TypeORM copy a data source comes from (found through
 * `dataSource.createQueryBuilder().update()`, `.delete()`, `.softDelete()`, `.insert()`).
 * Reads internal fields of those builders (`expressionMap`, `queryRunner`, `getValueSets()`)
 * through `WriteQueryBuilderState`, the only code that knows their shape.
 *
 * Why: a write by criteria (`update(where, values)`, `delete(where)`, `softDelete`,
 * `restore`, `upsert`, a builder's `execute()`) reaches subscribers with the values it sets
 * but neither its WHERE clause nor the rows it matches, so no subscriber event can read
 * those rows' values before the write, in its transaction; the junction rows of many-to-many
 * links reach them without any values. And `beforeQuery` sees SQL text only: it cannot tell
 * a builder's statement from SQL run by hand. Wrapping `execute` is the one place that has
 * the builder, its conditions and its transaction before the statement runs.
 *
 * An insert that does not update its entity (`save(…, { reload: false })`, `updateEntity(false)`) reports no
 * generated id: the hook asks for it (`extraReturningColumns`, which TypeORM fills only when it
 * updates the entity) and reads it from the result with the driver's `createGeneratedMap`.
 *
 * Tested with TypeORM 0.3.20+ and 1.1 (`test/unit/integrations.spec.ts` fails, naming the
 * builder and the field, when a prototype loses `execute` or a field read here changes type,
 * or when an insert without `updateEntity` stops leaving its identifiers to the hook).
 */

/** Which write a builder makes: `soft-delete` covers soft delete and restore. */
export type WriteKind = 'update' | 'delete' | 'soft-delete' | 'insert';

/** What the database said of a statement: the rows it affected, and its raw result. */
export interface StatementAnswer {
  affected?: number;
  raw?: unknown;
}

/**
 * Runs one write of a hooked data source. `execute` is TypeORM's own `execute` of the
 * builder; the hook resolves with what it resolved with. `afterStatement`, given to
 * `execute`, runs once the statement is done, before the app's hooks of the write's
 * after-event; `beforeStatement`, once the app's hooks of its before-event are done,
 * before the statement (lib/integrations/typeorm-entity-event-hooks.ts): TypeORM calls
 * those only with the write's listeners on.
 */
export type WriteHook = (
  write: WriteQueryBuilderState,
  execute: (afterStatement?: () => Promise<void>, beforeStatement?: () => Promise<void>) => Promise<unknown>,
) => Promise<unknown>;

/** The fields of TypeORM's (internal) `QueryExpressionMap` read here. */
interface ExpressionMap {
  mainAlias?: { hasMetadata: boolean; metadata?: EntityMetadata };
  callListeners: boolean;
  valuesSet?: ObjectLiteral | ObjectLiteral[];
  onUpdate?: { conflict?: string | string[] };
  onIgnore: boolean;
  insertFromSelect?: unknown;
  /** The columns an insert names (`into(entity, columns)`), as property paths; empty for every insertable column. */
  insertColumns: string[];
  wheres: unknown[];
  /** The entities (or their key maps) given to `whereEntity()`: TypeORM's persistence updates a row by its key this way. */
  whereEntities: ObjectLiteral[];
  parameters: ObjectLiteral;
  /** TypeORM 0.3 only. */
  nativeParameters?: ObjectLiteral;
  aliasNamePrefixingEnabled: boolean;
  /** True when the builder opens a transaction of its own for the write (`useTransaction(true)`) where none is open. */
  useTransaction: boolean;
  /** False for `save(…, { reload: false })` and a builder's `updateEntity(false)`: generated values are not read back. */
  updateEntity: boolean;
  /** The RETURNING the app asked for (`returning()`): column names, or SQL text. */
  returning?: string | string[];
  /** Columns an insert returns besides those asked for (TypeORM fills it only when it updates the entity). */
  extraReturningColumns: ColumnMetadata[];
  /** What TypeORM generated itself (uuids), per value set. */
  locallyGenerated?: Record<number, ObjectLiteral>;
}

type ColumnMetadata = EntityMetadata['columns'][number];

/** The members of TypeORM's write query builders read here (`queryRunner`, `getValueSets` are protected). */
interface WriteQueryBuilder {
  readonly connection: DataSource;
  queryRunner?: QueryRunner;
  expressionMap: ExpressionMap;
  execute(): Promise<unknown>;
  setQueryRunner(runner: QueryRunner | undefined): unknown;
  getValueSets?(): ObjectLiteral[];
}

type Execute = ((this: WriteQueryBuilder) => Promise<unknown>) & { [PATCHED]?: true };

const PATCHED = Symbol.for('nestjs-system-audit:patched-execute');
const hooks = new WeakMap<DataSource, WriteHook>();

const isObject = (value: unknown): boolean => value !== null && typeof value === 'object';
const isAlias = (value: unknown): boolean => {
  const alias = value as { hasMetadata?: unknown; metadata?: unknown } | null;
  return isObject(alias) && typeof alias!.hasMetadata === 'boolean' && (!alias!.hasMetadata || isObject(alias!.metadata));
};

/**
 * Each expression map field read here, with the type it is read as. `always` fields are
 * set on every builder; the others only once the builder is given an entity, values or a
 * conflict target. Keyed by `ExpressionMap`, so a field cannot be read without a check.
 */
const EXPRESSION_MAP_SHAPE: { [K in keyof ExpressionMap]-?: { type: string; always: boolean; check: (value: unknown) => boolean } } = {
  mainAlias: { type: 'an alias with a boolean hasMetadata (and its metadata)', always: false, check: isAlias },
  callListeners: { type: 'a boolean', always: true, check: (value) => typeof value === 'boolean' },
  valuesSet: { type: 'an object or an array', always: false, check: isObject },
  onUpdate: { type: 'an object', always: false, check: isObject },
  onIgnore: { type: 'a boolean', always: true, check: (value) => typeof value === 'boolean' },
  insertFromSelect: { type: 'a query builder', always: false, check: isObject },
  insertColumns: { type: 'an array', always: true, check: Array.isArray },
  wheres: { type: 'an array', always: true, check: Array.isArray },
  whereEntities: { type: 'an array', always: true, check: Array.isArray },
  parameters: { type: 'an object', always: true, check: isObject },
  nativeParameters: { type: 'an object', always: false, check: isObject },
  aliasNamePrefixingEnabled: { type: 'a boolean', always: true, check: (value) => typeof value === 'boolean' },
  useTransaction: { type: 'a boolean', always: true, check: (value) => typeof value === 'boolean' },
  updateEntity: { type: 'a boolean', always: true, check: (value) => typeof value === 'boolean' },
  returning: { type: 'a string or an array', always: false, check: (value) => typeof value === 'string' || Array.isArray(value) },
  extraReturningColumns: { type: 'an array', always: true, check: Array.isArray },
  locallyGenerated: { type: 'an object', always: false, check: isObject },
};

/** One of the four write query builders of a TypeORM copy, as located here. */
export interface LocatedWriteQueryBuilder {
  readonly kind: WriteKind;
  /** The builder's class name, e.g. `UpdateQueryBuilder`. */
  readonly name: string;
  /** A builder of that class, with no entity, values or conditions. */
  readonly builder: QueryBuilder<ObjectLiteral>;
  /** The prototype whose `execute` is patched. */
  readonly prototype: { execute: Execute };
}

/**
 * The four write query builders of `dataSource`'s TypeORM copy, located the way the patch
 * locates them.
 *
 * @throws Error naming the builder when one has no `execute` any more.
 */
export function locateWriteQueryBuilders(dataSource: DataSource): LocatedWriteQueryBuilder[] {
  const root = dataSource.createQueryBuilder() as unknown as QueryBuilder<ObjectLiteral>;
  const builders: Array<[WriteKind, QueryBuilder<ObjectLiteral>]> = [
    ['update', root.update() as unknown as QueryBuilder<ObjectLiteral>],
    ['delete', root.delete() as unknown as QueryBuilder<ObjectLiteral>],
    ['soft-delete', root.softDelete() as unknown as QueryBuilder<ObjectLiteral>],
    ['insert', root.insert() as unknown as QueryBuilder<ObjectLiteral>],
  ];
  return builders.map(([kind, builder]) => {
    const prototype = Object.getPrototypeOf(builder) as { execute: Execute };
    const name = builder.constructor.name;
    if (typeof prototype.execute !== 'function') {
      throw new Error(`nestjs-system-audit: TypeORM's ${name}.prototype.execute not found; this TypeORM version is not supported`);
    }
    return { kind, name, builder, prototype };
  });
}

/**
 * What of the shape read here a builder no longer has: one line per field read, naming the
 * builder and the field; empty when it matches. Fields set only for some writes are checked
 * when present.
 */
export function writeQueryBuilderShapeProblems(builder: QueryBuilder<ObjectLiteral>): string[] {
  const name = builder.constructor.name;
  const target = builder as unknown as Partial<WriteQueryBuilder>;
  const map = target.expressionMap as unknown as Record<string, unknown> | undefined;
  if (!isObject(map)) return [`${name}.expressionMap is not an object`];
  const problems: string[] = [];
  for (const [field, { type, always, check }] of Object.entries(EXPRESSION_MAP_SHAPE)) {
    const value = map![field];
    if ((always || value !== undefined) && !check(value)) problems.push(`${name}.expressionMap.${field} is not ${type} (${typeof value})`);
  }
  if (typeof target.setQueryRunner !== 'function') problems.push(`${name}.setQueryRunner is not a function`);
  if (!isObject(target.connection)) problems.push(`${name}.connection is not an object`);
  if (name === 'InsertQueryBuilder' && typeof target.getValueSets !== 'function') problems.push(`${name}.getValueSets is not a function`);
  return problems;
}

/**
 * Routes the writes of `dataSource`'s write query builders through `hook`, and installs the
 * patch on its TypeORM copy (once per copy). Builders of data sources without a hook run
 * unchanged, as do writes made while another write runs (TypeORM's own, or the hook's).
 *
 * @throws Error naming the builder when this TypeORM's builders do not have the shape read here.
 */
export function attachWriteQueryBuilderHook(dataSource: DataSource, hook: WriteHook): void {
  const located = locateWriteQueryBuilders(dataSource);
  const problems = located.flatMap(({ builder }) => writeQueryBuilderShapeProblems(builder));
  if (problems.length) {
    throw new Error(`nestjs-system-audit: TypeORM's write query builders changed shape (${problems.join('; ')}); this TypeORM version is not supported`);
  }
  hooks.set(dataSource, hook);
  for (const { kind, prototype } of located) {
    const original = prototype.execute;
    if (original[PATCHED]) continue;
    const execute: Execute = function (this: WriteQueryBuilder): Promise<unknown> {
      const run = (afterStatement?: () => Promise<void>, beforeStatement?: () => Promise<void>) => runInsideWrite(() => original.call(this), afterStatement, beforeStatement);
      const active = hooks.get(this.connection);
      if (!active || isInsideQueryBuilder()) return run();
      return active(new WriteQueryBuilderState(this as unknown as QueryBuilder<ObjectLiteral>, kind), run);
    };
    execute[PATCHED] = true;
    prototype.execute = execute;
  }
}

/** Stops routing `dataSource`'s writes through `hook` (the patch stays, inert). */
export function detachWriteQueryBuilderHook(dataSource: DataSource, hook: WriteHook): void {
  if (hooks.get(dataSource) === hook) hooks.delete(dataSource);
}

/**
 * The names a RETURNING text may return, in lower case: its identifiers, bare or quoted
 * (`"id"`, `` `id` ``, `t.id`), and `*` for all. Generous (a function's name counts): a
 * name taken for returned is one the module does not add, nor take out of the rows.
 */
function returnedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [token] of text.matchAll(/"(?:[^"]|"")*"|`(?:[^`]|``)*`|\*|[\p{L}_][\p{L}\p{N}_$]*/gu)) {
    names.add(token === '*' ? '*' : token.startsWith('"') || token.startsWith('`') ? token.slice(1, -1).toLowerCase() : token.toLowerCase());
  }
  return names;
}

/**
 * A write query builder as the change capture reads it: every TypeORM internal it reads of
 * the builder, read live (the builder's state may change while it runs).
 */
export class WriteQueryBuilderState {
  private readonly builder: WriteQueryBuilder;

  constructor(
    builder: QueryBuilder<ObjectLiteral>,
    /** Which write the builder makes. */
    readonly kind: WriteKind,
  ) {
    this.builder = builder as unknown as WriteQueryBuilder;
  }

  private get map(): ExpressionMap {
    return this.builder.expressionMap;
  }

  /** The data source the builder writes to. */
  get dataSource(): DataSource {
    return this.builder.connection;
  }

  /** The entity written, when the builder has one (not for a table name). */
  get metadata(): EntityMetadata | undefined {
    const alias = this.map.mainAlias;
    return alias?.hasMetadata ? alias.metadata : undefined;
  }

  /** False for TypeORM's own persistence (`save`, `remove`, …) and for writes run with listeners off (`callListeners(false)`, `{ listeners: false }`). */
  get callListeners(): boolean {
    return this.map.callListeners;
  }

  /** True when TypeORM opens a transaction of its own for the write (`useTransaction(true)`) where none is open. */
  get usesTransaction(): boolean {
    return this.map.useTransaction;
  }

  /** The values an update sets, or the value sets an insert inserts, as given. */
  get valuesSet(): ObjectLiteral | ObjectLiteral[] | undefined {
    return this.map.valuesSet;
  }

  /** The keys given to `whereEntity()` (TypeORM's persistence updates each row so, by its key); empty otherwise. */
  get whereEntities(): readonly ObjectLiteral[] {
    return this.map.whereEntities;
  }

  /** True for an insert with an `ON CONFLICT … UPDATE` / `ON DUPLICATE KEY UPDATE` part (an upsert). */
  get isUpsert(): boolean {
    return this.map.onUpdate !== undefined;
  }

  /** True for an insert that skips the rows that conflict (`orIgnore()`: `ON CONFLICT DO NOTHING`, `INSERT IGNORE`, `INSERT OR IGNORE`). */
  get ignoresConflicts(): boolean {
    return this.map.onIgnore;
  }

  /** The conflict target of an upsert, as given (column names or an SQL fragment). */
  get conflict(): string | string[] | undefined {
    return this.map.onUpdate?.conflict;
  }

  /** True for `INSERT … SELECT`. */
  get insertsFromSelect(): boolean {
    return Boolean(this.map.insertFromSelect);
  }

  /** The columns an insert names (`into(entity, columns)`), as property paths; empty when it names none (it inserts every insertable column). */
  get insertColumns(): readonly string[] {
    return this.map.insertColumns;
  }

  /**
   * Whether an insert's statement returns rows of its own (RETURNING, where the database
   * has it): the app asked for some (`returning()`), or TypeORM asks for the values the
   * database completes (generated keys, defaults, dates), to read them back into the entity.
   */
  get returnsRowsAnyway(): boolean {
    const metadata = this.metadata;
    if (!this.dataSource.driver.isReturningSqlSupported('insert')) return false;
    return this.returnsRows || (this.map.updateEntity && metadata !== undefined && metadata.getInsertionReturningColumns().length > 0);
  }

  /**
   * Makes an `INSERT … SELECT` return `columns` too, where the database has RETURNING (it
   * has no value sets TypeORM could read generated values back into: TypeORM returns what
   * it would read back, and the app's `returning()`). Returns the columns added (those the
   * statement would not have returned) and a function putting the builder back as it was.
   */
  returnColumnsFromSelect(columns: ColumnMetadata[]): { added: ColumnMetadata[]; restore: () => void } {
    const map = this.map;
    const saved = { updateEntity: map.updateEntity, extra: map.extraReturningColumns, returning: map.returning };
    const metadata = this.metadata;
    if (map.updateEntity && metadata) {
      // TypeORM sets the columns it reads back when it runs, over any added before: they are
      // set here instead, where it leaves them (it reads nothing back of an INSERT … SELECT).
      map.updateEntity = false;
      map.extraReturningColumns = metadata.getInsertionReturningColumns();
    }
    const added = this.returnColumns(columns);
    return {
      added,
      restore: () => {
        map.updateEntity = saved.updateEntity;
        map.extraReturningColumns = saved.extra;
        map.returning = saved.returning;
      },
    };
  }

  /**
   * Runs `execute` (the builder's own write, on the query runner it was given) and hands
   * back, with its result, what the database said of its statement: the rows it affected
   * and its raw result (the last rowid on SQLite, the OK packet on MySQL and MariaDB).
   * TypeORM's `InsertResult` keeps only the raw result: the count is read from the
   * `QueryResult` its query runner returns to the builder, on a view of that runner the
   * builder runs on meanwhile. `execute` is given a function telling it as soon as the
   * statement is done (before TypeORM calls the hooks of its after-event).
   */
  async watchStatement(execute: (statement: () => StatementAnswer | undefined) => Promise<unknown>): Promise<{ result: unknown; statement: StatementAnswer | undefined }> {
    const runner = this.builder.queryRunner;
    if (!runner) return { result: await execute(() => undefined), statement: undefined };
    let statement: StatementAnswer | undefined;
    const query = (sql: string, parameters?: unknown[], structured?: boolean): Promise<unknown> =>
      runner.query(sql, parameters, true).then((answer: { affected?: number; raw?: unknown }) => {
        statement ??= answer;
        return structured ? answer : answer.raw;
      });
    const watched = Object.create(runner, { query: { value: query, configurable: true, writable: true } }) as QueryRunner;
    this.builder.setQueryRunner(watched);
    try {
      return { result: await execute(() => statement), statement };
    } finally {
      this.builder.setQueryRunner(runner);
    }
  }

  /** False when the write does not read generated values back (`save(…, { reload: false })`, `updateEntity(false)`). */
  get updatesEntity(): boolean {
    return this.map.updateEntity;
  }

  /**
   * Makes an insert that does not read generated values back return `columns` where the
   * database has RETURNING (other databases report a generated increment id anyway).
   * Returns the columns added: those the insert would not have returned already (none
   * when its RETURNING was given as SQL text, which is left as it is).
   */
  returnColumns(columns: ColumnMetadata[]): ColumnMetadata[] {
    const map = this.map;
    const asked = map.returning;
    if (typeof asked === 'string') {
      // SQL text: the columns it does not name (nor `*`) are appended to it.
      const named = returnedNames(asked);
      const added = named.has('*') ? [] : columns.filter((column) => !named.has(column.databaseName.toLowerCase()));
      if (added.length) map.returning = [asked, ...added.map((column) => this.dataSource.driver.escape(column.databaseName))].join(', ');
      return added;
    }
    const names = new Set((asked ?? []).map((name) => name.toLowerCase()));
    const added = names.has('*')
      ? []
      : columns.filter(
          (column) => !map.extraReturningColumns.includes(column) && !names.has(column.databaseName.toLowerCase()) && !names.has(column.propertyPath.toLowerCase()),
        );
    map.extraReturningColumns = [...map.extraReturningColumns, ...added];
    return added;
  }

  /** Whether the app asked the write for a RETURNING of its own (`returning()`). */
  get returnsRows(): boolean {
    const asked = this.map.returning;
    return typeof asked === 'string' ? asked.trim() !== '' : Array.isArray(asked) && asked.length > 0;
  }

  /** What TypeORM generated itself for the insert's value set at `index` (uuids where the database does not). */
  locallyGenerated(index: number): ObjectLiteral | undefined {
    return this.map.locallyGenerated?.[index];
  }

  /** The query runner the builder runs on, if it was given one. */
  get queryRunner(): QueryRunner | undefined {
    return this.builder.queryRunner;
  }

  /** Makes the builder run on `runner` (or, with `undefined`, on one of its own again). */
  setQueryRunner(runner: QueryRunner | undefined): void {
    this.builder.setQueryRunner(runner);
  }

  /** An insert's value sets (the objects TypeORM writes generated ids back into); empty for other writes. */
  valueSets(): ObjectLiteral[] {
    return this.builder.getValueSets?.() ?? [];
  }

  /**
   * Gives `probe` (a SELECT of the same entity) the write's WHERE clause and parameters.
   * The write's conditions name bare properties (no alias prefix): the probe reads them the
   * same way.
   */
  copyConditionsTo(probe: SelectQueryBuilder<ObjectLiteral>): void {
    const map = probe.expressionMap as unknown as ExpressionMap;
    const source = this.map;
    map.aliasNamePrefixingEnabled = false;
    map.wheres = [...source.wheres];
    map.nativeParameters = { ...source.nativeParameters };
    probe.setParameters({ ...source.parameters });
  }
}
