import type { DataSource, Driver, EntityMetadata } from 'typeorm';
import { AuditJournalEntity } from './audit-journal.entity.js';
import { AuditLogEntity } from './audit-log.entity.js';
import { AuditSubjectEntity } from './audit-subject.entity.js';
import { EventSubjects } from './event-subjects.js';
import { JournalIndex } from './journal-index.js';
import { escapedTable, valuesTable } from './sql.js';
import { UtcDateTimeParameter } from './utc-date.transformer.js';
import { MARKER_ENTRY } from '../journal/journal-entry.js';
import { MYSQL_DRIVERS, SQLITE_DRIVERS } from './drivers.js';

type Column = EntityMetadata['columns'][number];

/** One SQL statement with its parameters. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/** PostgreSQL's journal DELETE (by a list of units elsewhere: JournalIndex.unitDeletes): `= ANY($1)` alone, `= ANY($n)` as a CTE before the INSERT. */
interface JournalStatements {
  deleteAny: string;
  /** The CTE with the unit ids as parameter `index` (after the event columns, and the subject arrays if any). */
  deleteBefore(index: number): string;
  /**
   * A guarded write's: the same DELETE returning the ids it deleted (`journal`), and
   * `gone`, the journal row ids (parameter `index + 1`) it did not find.
   */
  deleteChecked(index: number): string;
}

/** The `audit_subject` INSERT: its head and tail, and on PostgreSQL the CTE that rides on the event INSERT. */
interface SubjectStatements {
  head: string;
  tail: string;
  /** `subjects AS (INSERT … SELECT * FROM unnest(…))`, its arrays from parameter `index` on. */
  cte(index: number): string;
}

/** The rows of one event INSERT and their parameters (in row order, one per column). */
interface EventChunk {
  rows: readonly AuditLogEntity[];
  params: unknown[];
}

/** A chunk of rows as PostgreSQL array literals: one per column, and four of subject rows if any. */
interface LiteralChunk {
  columns: string[];
  subjects: [string, string, string, string] | undefined;
}

/**
 * The events of a unit whose journal rows the write deletes: they are stored only if every
 * one of those rows is still there to delete (else another instance recovered the unit).
 */
export interface JournalGuard {
  /** The unit's key within its batch. */
  key: number;
  /** The unit ids whose journal rows the write would delete with these events. */
  units: readonly string[];
  /** Its journal rows in the audit data source. */
  ids: readonly string[];
  rows: readonly AuditLogEntity[];
}

/**
 * What runs first in a guarded write that takes several statements: the journal rows of
 * its units, read (and locked where the database can), each row as {@link JournalCheckRow}.
 */
export interface JournalCheck {
  statements: Statement[];
}

/**
 * A journal row a {@link JournalCheck} found: its id, its unit's, and whether it is a
 * marker (its instance id is its own id: a unit's, written with the unit's events by the
 * writer, or a row's, written with that row's recovered events by recovery).
 */
export interface JournalCheckRow {
  id: string;
  unit: string;
  marker: boolean | number | string;
}

/** The text of the error a guarded single statement fails with when a unit's journal rows are not all there. */
const GUARD_FAILED = 'nestjs-system-audit: journal rows gone of guard';

/** Whether `error` is a guarded single statement's failure for a unit whose journal rows were not all there (nothing of it was done). */
export function isGuardFailure(error: unknown): boolean {
  return (error as { message?: unknown } | null)?.message?.toString().includes(GUARD_FAILED) === true;
}

/** Columns of a subject row, in the order the statements list them. */
const SUBJECT_COLUMNS = ['subjectType', 'subjectId', 'eventId', 'occurredAt'] as const;

/** Rows in one `VALUES` INSERT, at most: past a few hundred, bigger statements stop paying off. */
const ROWS_PER_STATEMENT = 500;
/** Rows in one `unnest` INSERT, at most (as many as the writer puts in a batch). */
const ROWS_PER_UNNEST = 2000;
/** Unit ids in one journal DELETE, at most. */
const UNITS_PER_STATEMENT = 1000;
/** A value that is not a string (date, number, null) takes at most this many bytes. */
const SCALAR_BYTES = 32;
/** Parentheses, commas and spaces around a row's values. */
const ROW_BYTES = 16;

const UPSERT_ON_CONFLICT = new Set([
  'postgres',
  'aurora-postgres',
  'cockroachdb',
  'sqlite',
  'better-sqlite3',
  'sqljs',
  'capacitor',
  'cordova',
  'expo',
  'react-native',
  'nativescript',
]);
const NO_UNITS: readonly string[] = [];

const POSTGRES = new Set(['postgres', 'aurora-postgres']);
/** Column types PostgreSQL takes as arrays of text literals from node-postgres, for `unnest`. */
const UNNEST_TYPES = new Set([
  'uuid',
  'character varying',
  'varchar',
  'character',
  'char',
  'text',
  'json',
  'jsonb',
  'timestamp without time zone',
  'timestamp with time zone',
  'timestamp',
  'timestamptz',
  'date',
  'smallint',
  'integer',
  'bigint',
  'numeric',
  'real',
  'double precision',
  'boolean',
  'bytea',
]);

/** Whether the data source is SQLite (TypeORM gives it one connection for everything). */

/** Characters MySQL's client-side formatting escapes with a backslash, each one byte more. */
// eslint-disable-next-line no-control-regex -- these control characters are what it escapes
const MYSQL_ESCAPED = /[\0\b\t\n\r\x1a"'\\]/g;

/** The most bind parameters one statement may carry on a driver. */
function parameterLimit(type: string): number {
  if (SQLITE_DRIVERS.has(type)) return 32_766;
  return 65_535;
}

/**
 * A PostgreSQL array literal (`{"a","b",NULL}`) of strings and nulls, as node-postgres
 * would write the array, built in one pass (node-postgres runs two regular expressions
 * and several calls per element). An array holding anything else is returned as it is,
 * for node-postgres to convert.
 */
export function arrayLiteral(values: readonly unknown[]): string | readonly unknown[] {
  const elements = new Array<string>(values.length);
  for (let index = 0; index < values.length; index++) {
    const element = literalElement(values[index]);
    if (element === undefined) return values;
    elements[index] = element;
  }
  return `{${elements.join(',')}}`;
}

/**
 * One element of a PostgreSQL array literal, as node-postgres writes it: `NULL`, a
 * double-quoted string, or the quoted text of a UTC time parameter; `undefined` for any
 * other value.
 */
function literalElement(value: unknown): string | undefined {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return `"${escapeElement(value)}"`;
  if (value instanceof UtcDateTimeParameter) return `"${escapeElement(value.text)}"`;
  return undefined;
}

/** A value as an array literal takes it: a string, `null`, or `undefined` for any other kind. */
function literalValue(value: unknown): string | null | undefined {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return null;
  if (value instanceof UtcDateTimeParameter) return value.text;
  return undefined;
}

/** Whether a string needs backslashes inside a double-quoted array element. */
const ESCAPED_IN_ELEMENT = /["\\]/;

/**
 * The array literal of strings and nulls, as {@link arrayLiteral} writes it; values that
 * are all strings without a quote or backslash (most columns) are joined natively in one
 * step, without a string per element.
 */
export function arrayText(values: ReadonlyArray<string | null>): string {
  let nulls = 0;
  let plain = true;
  for (const value of values) {
    if (value === null) nulls++;
    else if (plain && ESCAPED_IN_ELEMENT.test(value)) plain = false;
  }
  if (values.length === 0) return '{}';
  if (nulls === values.length) return `{${'NULL,'.repeat(values.length - 1)}NULL}`;
  if (nulls === 0 && plain) return `{"${values.join('","')}"}`;
  return arrayLiteral(values) as string;
}

/** `text` with a backslash before each `"` and `\\` (a copy only when it has one). */
function escapeElement(text: string): string {
  let escaped = '';
  let from = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code === 0x22 || code === 0x5c) {
      escaped += `${text.slice(from, index)}\\`;
      from = index;
    }
  }
  return from === 0 && escaped === '' ? text : escaped + text.slice(from);
}

/**
 * How a row's value of `column` becomes the driver's parameter, built once per column:
 * TypeORM's `preparePersistentValue` walks a chain of type tests (and builds an array)
 * for every value. A plain column (no transformer, not embedded) whose driver passes a
 * string through unchanged takes strings as they are; one whose driver turns an object
 * into its `JSON.stringify` text takes that. Each is decided by asking the driver once,
 * at start; every other value and column goes through the driver as before.
 */
function columnValue(driver: Driver, column: Column): (row: AuditLogEntity) => unknown {
  const prepare = (row: AuditLogEntity): unknown => driver.preparePersistentValue(column.getEntityValue(row), column);
  if (column.transformer || column.embeddedMetadata || column.relationMetadata || column.isArray) return prepare;
  const property = column.propertyName as keyof AuditLogEntity;
  const probe = { probe: ['value', 1] };
  if (driver.preparePersistentValue('probe', column) === 'probe') {
    return (row) => {
      const value = row[property];
      return typeof value === 'string' || value === null || value === undefined ? value : prepare(row);
    };
  }
  if (driver.preparePersistentValue(probe, column) === JSON.stringify(probe) && driver.preparePersistentValue(null, column) === null) {
    return (row) => {
      const value = row[property];
      return value === null || value === undefined ? value : typeof value === 'object' ? JSON.stringify(value) : prepare(row);
    };
  }
  return prepare;
}

/**
 * Thrown when a single audit event is bigger than one statement may be (MySQL/MariaDB's
 * `max_allowed_packet`). Only the caller that wrote it fails.
 */
export class AuditEventTooLargeError extends Error {
  constructor(
    readonly eventId: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(
      `Audit event ${eventId} takes ${bytes} bytes as SQL, more than one statement may carry ` +
        `(${limit} bytes, from the server's max_allowed_packet): raise max_allowed_packet or lower maxEventBytes`,
    );
    this.name = 'AuditEventTooLargeError';
  }
}

/**
 * The SQL the writer runs on one data source, built from TypeORM metadata once: a
 * multi-row INSERT into `audit_log` that skips event ids already stored (so that a batch
 * whose COMMIT succeeded but whose acknowledgement was lost can be written again), split
 * to fit the driver's parameter limit and MySQL's packet size, and the DELETE of
 * `audit_journal` rows by unit id. Values go through the driver's own conversion
 * (`preparePersistentValue`), as TypeORM would send them.
 *
 * On PostgreSQL the rows travel as one array per column (`INSERT … SELECT * FROM
 * unnest($1::uuid[], …)`): the statement stays short whatever the row count, so the
 * server parses and plans it in no time, and about twice as many rows are stored per
 * second as with a `VALUES` list of thousands of parameters.
 */
export class WriteStatements {
  private readonly driver: Driver;
  private readonly columns: readonly Column[];
  private readonly head: string;
  private tail: string;
  /** The conflict clause on PostgreSQL when `audit_log` is partitioned by month (key `(id, occurred_at)`). */
  private readonly partitionedTail: string;
  private readonly plainTail: string;
  private readonly rowsPerStatement: number;
  /** `(…)` of the n-th row of a `VALUES` statement, built once (numbered parameters differ per row). */
  private readonly tuples: string[] = [];
  private readonly subjectTuples: string[] = [];
  /** PostgreSQL: one array parameter per column, rows from `unnest` (a short statement, planned in no time). */
  private readonly unnest: boolean;
  /** MySQL or MariaDB: statements must fit in `max_allowed_packet`. */
  readonly mysql: boolean;
  /** PostgreSQL: `audit_log` may be partitioned by month. */
  readonly postgres: boolean;
  private journal?: JournalStatements;
  /** MySQL/MariaDB: the journal's index on the unit id, which the journal's locking read and DELETE name (`FORCE INDEX`). */
  private readonly journalIndex: JournalIndex;
  private subjectSql?: SubjectStatements;
  private readonly subjects: EventSubjects;
  /** Positions of the event id and time among the event columns (a subject row takes their prepared values). */
  private readonly idColumn: number;
  private readonly occurredAtColumn: number;
  private readonly upsertTail: (column: string) => string;
  /** Per column, in order: the value the driver is given for a row (as `preparePersistentValue` makes it). */
  private readonly values: ReadonlyArray<(row: AuditLogEntity) => unknown>;

  constructor(
    private readonly dataSource: DataSource,
    entities: () => readonly EntityMetadata[] = () => dataSource.entityMetadatas,
  ) {
    const driver = dataSource.driver;
    const type = String(driver.options.type);
    const metadata = dataSource.getMetadata(AuditLogEntity);
    this.driver = driver;
    this.mysql = MYSQL_DRIVERS.has(type);
    this.postgres = POSTGRES.has(type);
    this.columns = metadata.columns;
    const types = this.columns.map((column) => driver.normalizeType(column));
    this.unnest = POSTGRES.has(type) && this.columns.every((column, i) => !column.isArray && UNNEST_TYPES.has(types[i]!));
    const into = `INSERT INTO ${escapedTable(dataSource, metadata)} (${this.columns.map((column) => driver.escape(column.databaseName)).join(', ')}) `;
    this.head = this.unnest
      ? `${into}SELECT * FROM unnest(${types.map((columnType, i) => `${driver.createParameter(`c${i}`, i)}::${columnType}[]`).join(', ')})`
      : `${into}VALUES `;
    this.upsertTail = (column) =>
      this.mysql ? ` ON DUPLICATE KEY UPDATE ${column} = ${column}` : UPSERT_ON_CONFLICT.has(type) ? ' ON CONFLICT DO NOTHING' : '';
    const id = driver.escape(metadata.primaryColumns[0]!.databaseName);
    // Only a conflict on the event's key is a no-op: one on another unique index fails the write.
    this.tail = this.plainTail = this.mysql || !UPSERT_ON_CONFLICT.has(type) ? this.upsertTail(id) : ` ON CONFLICT (${id}) DO NOTHING`;
    this.partitionedTail = ` ON CONFLICT (${id}, ${driver.escape(metadata.findColumnWithPropertyName('occurredAt')!.databaseName)}) DO NOTHING`;
    this.idColumn = this.columns.indexOf(metadata.primaryColumns[0]!);
    this.occurredAtColumn = this.columns.indexOf(metadata.findColumnWithPropertyName('occurredAt')!);
    this.subjects = new EventSubjects(entities);
    this.journalIndex = new JournalIndex(dataSource);
    this.values = this.columns.map((column) => columnValue(driver, column));
    this.rowsPerStatement = this.unnest
      ? ROWS_PER_UNNEST
      : Math.max(1, Math.min(ROWS_PER_STATEMENT, Math.floor(parameterLimit(type) / this.columns.length)));
  }

  /**
   * MySQL/MariaDB: the journal table has no index of the entity's name on the unit id (made
   * by hand): its statements name none from now on.
   */
  withoutJournalIndex(): void {
    this.journalIndex.drop();
    this.journal = undefined;
  }

  /** Whether `error` is the server's refusal of the journal's unit id index the statements name, which the table lacks (then {@link withoutJournalIndex}). */
  refusedJournalIndex(error: unknown): boolean {
    return this.journalIndex.refused(error);
  }

  /** PostgreSQL: whether `audit_log` is partitioned by month (a stored event is then known by its id and time, the table's key). */
  setPartitioned(partitioned: boolean): void {
    this.tail = partitioned ? this.partitionedTail : this.plainTail;
  }

  /**
   * The statements that store `rows`, their `audit_subject` rows, and delete the journal
   * rows of `units`; run them in one transaction when there is more than one. On
   * PostgreSQL the subject rows and the DELETE ride on the event INSERT (`WITH journal AS
   * (DELETE …), subjects AS (INSERT …) INSERT …`): a batch of up to 2,000 events is one
   * statement, atomic on its own, one round trip. Elsewhere the subject rows follow the
   * events in multi-row INSERTs of their own. Both INSERTs skip rows already stored.
   */
  write(rows: readonly AuditLogEntity[], units: readonly string[], byteLimit: number): Statement[] {
    if (this.unnest && rows.length > 0) {
      const direct = this.unnestLiterals(rows, byteLimit);
      if (direct) return direct.map((chunk, index) => this.literalStatement(chunk, index === direct.length - 1 ? units : NO_UNITS));
    }
    const chunks = rows.length > 0 ? this.insert(rows, byteLimit) : [];
    const statements: Statement[] = [];
    if (this.unnest) {
      chunks.forEach((chunk, index) => {
        const last = index === chunks.length - 1;
        statements.push(this.unnestStatement(chunk, last ? units : NO_UNITS));
      });
      if (chunks.length === 0 && units.length > 0) {
        statements.push({ sql: (this.journal ??= this.journalStatements()).deleteAny, params: [units] });
      }
      return statements;
    }
    for (const chunk of chunks) statements.push(this.statement(chunk.rows.length, chunk.params));
    if (chunks.length > 0) statements.push(...this.subjectInserts(chunks, byteLimit));
    // MySQL/MariaDB: through the unit id index, one lookup per unit (JournalIndex.unitsJoin).
    statements.push(...this.journalIndex.unitDeletes(units));
    return statements;
  }

  /**
   * PostgreSQL, when `rows` fit in one statement: that statement, which deletes the journal
   * rows of `units` and stores the events and subject rows, when every guard's journal rows
   * were all still there to delete: one round trip, atomic on its own. When one guard's are
   * not, the statement fails ({@link isGuardFailure}) and nothing of it is done.
   * `undefined` where the rows take several statements (or cannot travel as literals):
   * then {@link journalCheck} runs first, in the write's transaction.
   */
  guardedWrite(rows: readonly AuditLogEntity[], units: readonly string[], guards: readonly JournalGuard[], byteLimit: number): Statement | undefined {
    if (!this.unnest || rows.length === 0 || units.length === 0) return undefined;
    const chunks = this.unnestLiterals(rows, byteLimit);
    if (chunks?.length !== 1) return undefined;
    // A unit whose rows are not all there, or whose events a marker among them says are
    // stored, fails the statement (nothing stored, no journal row deleted: rows the unit wrote
    // after it was recovered must stay for recovery); the write is then made by the
    // several-statement path, which leaves that unit's rows alone. The check is an InitPlan,
    // run once: NULL (every row found, no marker) keeps every event.
    const check = ` WHERE (SELECT CAST(min('${GUARD_FAILED} ' || id) AS int) FROM gone) IS NULL`;
    return this.literalStatement(chunks[0]!, units, { ids: guards.flatMap((guard) => guard.ids), check });
  }

  /**
   * The statements that read the journal rows of `units` ({@link JournalCheckRow}: id,
   * unit id, whether a marker), locking them where the database can (`FOR UPDATE`; SQLite
   * has one writer), for a guarded write of several statements: the write's DELETE
   * follows, for the units whose rows were all there, without a marker, only. On
   * MySQL/MariaDB both go through the unit id index, one lookup per unit
   * ({@link JournalIndex.unitsJoin}), so that they lock these units' rows and no other
   * batch's.
   */
  journalCheck(units: readonly string[]): JournalCheck {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const table = escapedTable(this.dataSource, metadata);
    const name = (propertyName: keyof AuditJournalEntity) => this.driver.escape(metadata.findColumnWithPropertyName(propertyName)!.databaseName);
    const id = name('id');
    const unit = metadata.findColumnWithPropertyName('unitId')!;
    const column = name('unitId');
    const select = `SELECT ${id} AS id, ${column} AS unit, ${name('instanceId')} = ${id} AS marker FROM ${table}`;
    if (this.postgres) {
      const array = `::${this.driver.normalizeType(unit)}[]`;
      const sql = `${select} WHERE ${column} = ANY(${this.driver.createParameter('units', 0)}${array}) FOR UPDATE`;
      return { statements: [{ sql, params: [units] }] };
    }
    const statements: Statement[] = [];
    for (let start = 0; start < units.length; start += UNITS_PER_STATEMENT) {
      const params = units.slice(start, start + UNITS_PER_STATEMENT);
      const sql = this.mysql
        ? `SELECT j.${id} AS id, j.${column} AS unit, j.${name('instanceId')} = j.${id} AS marker FROM ${this.journalIndex.unitsJoin(params.length)} FOR UPDATE`
        : `${select} WHERE ${column} IN (${params.map((_, index) => this.driver.createParameter(`u${index}`, index)).join(', ')})`;
      statements.push({ sql, params });
    }
    return { statements };
  }

  /**
   * PostgreSQL: the rows as array literals, one per column, from one pass over the rows
   * that gathers each column's values (no row-major parameter list), split as
   * {@link insert} splits. `undefined` when a value is of a kind the literals do not take
   * (then the general path converts the rows).
   */
  private unnestLiterals(rows: readonly AuditLogEntity[], byteLimit: number): LiteralChunk[] | undefined {
    const { values, rowsPerStatement, idColumn, occurredAtColumn } = this;
    const width = values.length;
    const row = new Array<string | null>(width);
    const chunks: LiteralChunk[] = [];
    const fresh = (): Array<Array<string | null>> => Array.from({ length: width }, () => []);
    let columns = fresh();
    let subjects: [string[], string[], Array<string | null>, Array<string | null>] | undefined;
    let count = 0;
    let bytes = 0;
    const flush = (): void => {
      chunks.push({ columns: columns.map(arrayText), subjects: subjects?.map(arrayText) as LiteralChunk['subjects'] });
      columns = fresh();
      subjects = undefined;
      count = 0;
      bytes = 0;
    };
    for (let index = 0; index < rows.length; index++) {
      const entity = rows[index]!;
      let rowBytes = ROW_BYTES;
      for (let column = 0; column < width; column++) {
        const value = literalValue(values[column]!(entity));
        if (value === undefined) return undefined;
        row[column] = value;
        rowBytes += value === null ? SCALAR_BYTES : value.length * 3 + 4;
      }
      if (count > 0 && (count === rowsPerStatement || bytes + rowBytes > byteLimit)) flush();
      for (let column = 0; column < width; column++) columns[column]!.push(row[column]!);
      if (entity.changes?.length) {
        for (const subject of this.subjects.of(entity)) {
          subjects ??= [[], [], [], []];
          subjects[0].push(subject.type);
          subjects[1].push(subject.id);
          subjects[2].push(row[idColumn]!);
          subjects[3].push(row[occurredAtColumn]!);
        }
      }
      count++;
      bytes += rowBytes;
      // A row above the limit on its own goes alone.
      if (rowBytes > byteLimit) flush();
    }
    if (count > 0) flush();
    return chunks;
  }

  /**
   * One PostgreSQL statement of a chunk of {@link unnestLiterals}, with its subject rows and
   * the journal DELETE of `units` (CTEs); with `guard`, the DELETE returns what it deleted
   * and `guard.check` refuses the statement when a row of `guard.ids` was not among it.
   */
  private literalStatement(chunk: LiteralChunk, units: readonly string[], guard?: { ids: readonly string[]; check: string }): Statement {
    const params: unknown[] = [...chunk.columns];
    const ctes: string[] = [];
    const subjectsAt = params.length;
    if (chunk.subjects) params.push(...chunk.subjects);
    if (units.length > 0) {
      const journal = (this.journal ??= this.journalStatements());
      ctes.push(guard ? journal.deleteChecked(params.length) : journal.deleteBefore(params.length));
      params.push(units);
      if (guard) params.push(arrayText(guard.ids));
    }
    if (chunk.subjects) ctes.push((this.subjectSql ??= this.subjectStatements()).cte(subjectsAt));
    return { sql: `${ctes.length ? `WITH ${ctes.join(', ')} ` : ''}${this.head}${guard?.check ?? ''}${this.tail}`, params };
  }

  /**
   * One PostgreSQL statement: the chunk's events from one array per column, their
   * subject rows from four more arrays (a CTE), and the journal DELETE of `units` (a CTE).
   */
  private unnestStatement(chunk: EventChunk, units: readonly string[]): Statement {
    const { params } = this.statement(chunk.rows.length, chunk.params);
    const ctes: string[] = [];
    const subjects = this.subjectColumns(chunk);
    const subjectsAt = params.length;
    if (subjects[0].length > 0) params.push(...subjects.map(arrayLiteral));
    if (units.length > 0) {
      ctes.push((this.journal ??= this.journalStatements()).deleteBefore(params.length));
      params.push(units);
    }
    if (subjects[0].length > 0) ctes.push((this.subjectSql ??= this.subjectStatements()).cte(subjectsAt));
    return { sql: `${ctes.length ? `WITH ${ctes.join(', ')} ` : ''}${this.head}${this.tail}`, params };
  }

  /** The chunk's subject rows as four columns: type, id, event id, time (the event's own prepared values). */
  private subjectColumns(chunk: EventChunk): [unknown[], unknown[], unknown[], unknown[]] {
    const columns: [unknown[], unknown[], unknown[], unknown[]] = [[], [], [], []];
    const width = this.columns.length;
    chunk.rows.forEach((row, index) => {
      const subjects = this.subjects.of(row);
      if (subjects.length === 0) return;
      const eventId = chunk.params[index * width + this.idColumn];
      const occurredAt = chunk.params[index * width + this.occurredAtColumn];
      for (const subject of subjects) {
        columns[0].push(subject.type);
        columns[1].push(subject.id);
        columns[2].push(eventId);
        columns[3].push(occurredAt);
      }
    });
    return columns;
  }

  /** Multi-row INSERTs of the chunks' subject rows, each within the parameter limit and `byteLimit`. */
  private subjectInserts(chunks: readonly EventChunk[], byteLimit: number): Statement[] {
    const statements: Statement[] = [];
    const sql = (this.subjectSql ??= this.subjectStatements());
    const width = SUBJECT_COLUMNS.length;
    let params: unknown[] = [];
    let bytes = 0;
    const flush = (): void => {
      if (params.length === 0) return;
      statements.push({ sql: sql.head + this.placeholderRows(params.length / width, width) + sql.tail, params });
      params = [];
      bytes = 0;
    };
    for (const chunk of chunks) {
      const [types, ids, eventIds, times] = this.subjectColumns(chunk);
      for (let i = 0; i < types.length; i++) {
        const type = types[i] as string;
        const id = ids[i] as string;
        const rowBytes = ROW_BYTES + (type.length + id.length) * 3 + 8 + 2 * SCALAR_BYTES;
        if (params.length / width === this.rowsPerStatement || bytes + rowBytes > byteLimit - sql.head.length - sql.tail.length) flush();
        params.push(type, id, eventIds[i], times[i]);
        bytes += rowBytes;
      }
    }
    flush();
    return statements;
  }

  /** `(…), (…)` of `count` subject rows (numbered parameters differ per row; built once). */
  private placeholderRows(count: number, width: number): string {
    const tuples = this.subjectTuples;
    for (let row = tuples.length; row < count; row++) {
      const placeholders: string[] = [];
      for (let column = 0; column < width; column++) {
        const index = row * width + column;
        placeholders.push(this.driver.createParameter(`s${index}`, index));
      }
      tuples.push(`(${placeholders.join(', ')})`);
    }
    return count === tuples.length ? tuples.join(', ') : tuples.slice(0, count).join(', ');
  }

  private subjectStatements(): SubjectStatements {
    const metadata = this.dataSource.getMetadata(AuditSubjectEntity);
    const columns = SUBJECT_COLUMNS.map((name) => metadata.findColumnWithPropertyName(name)!);
    const names = columns.map((column) => this.driver.escape(column.databaseName));
    const into = `INSERT INTO ${escapedTable(this.dataSource, metadata)} (${names.join(', ')}) `;
    const tail = this.upsertTail(this.driver.escape(metadata.findColumnWithPropertyName('eventId')!.databaseName));
    const types = columns.map((column) => this.driver.normalizeType(column));
    return {
      head: `${into}VALUES `,
      tail,
      cte: (index) =>
        `subjects AS (${into}SELECT * FROM unnest(${types
          .map((type, i) => `${this.driver.createParameter(`s${i}`, index + i)}::${type}[]`)
          .join(', ')})${tail})`,
    };
  }

  /**
   * The rows of each INSERT of `rows` and their parameters, each within the parameter limit and `byteLimit`. A row's size is
   * bounded from above by three bytes per UTF-16 unit of its strings (UTF-8 takes at most
   * three, MySQL's escaping at most two); a row above the limit on its own is measured
   * exactly and goes alone, or fails with `AuditEventTooLargeError` on MySQL/MariaDB.
   */
  private insert(rows: readonly AuditLogEntity[], byteLimit: number): EventChunk[] {
    const chunks: EventChunk[] = [];
    const { values, rowsPerStatement } = this;
    let params: unknown[] = [];
    let first = 0;
    let count = 0;
    let bytes = 0;
    for (let index = 0; index < rows.length; index++) {
      const row = rows[index]!;
      const start = params.length;
      let rowBytes = ROW_BYTES;
      for (let column = 0; column < values.length; column++) {
        const value = values[column]!(row);
        rowBytes += typeof value === 'string' ? value.length * 3 + 4 : SCALAR_BYTES;
        params.push(value === undefined ? null : value);
      }
      if (count > 0 && (count === rowsPerStatement || bytes + rowBytes > byteLimit)) {
        const next = params.splice(start);
        chunks.push({ rows: rows.slice(first, first + count), params });
        params = next;
        first = index;
        count = 0;
        bytes = 0;
      }
      count++;
      bytes += rowBytes;
      if (rowBytes > byteLimit) {
        if (this.mysql) this.checkExactSize(row, params, byteLimit);
        chunks.push({ rows: rows.slice(first, first + count), params });
        params = [];
        first = index + 1;
        count = 0;
        bytes = 0;
      }
    }
    if (count > 0) chunks.push({ rows: rows.slice(first, first + count), params });
    return chunks;
  }

  /**
   * INSERTs of one marker row per unit into the journal (skipped where one exists): the
   * units' events are stored, their journal rows in other data sources are about to be
   * deleted. A marker's id, unit id and instance id are the unit's id (it belongs to no
   * live instance); recovery that finds it stores nothing again.
   */
  markers(unitIds: readonly string[], createdAt: Date): Statement[] {
    if (unitIds.length === 0) return [];
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const column = (name: string) => metadata.findColumnWithPropertyName(name)!;
    const names = ['id', 'unitId', 'instanceId', 'createdAt', 'entry'];
    const id = this.driver.escape(column('id').databaseName);
    const head = `INSERT INTO ${escapedTable(this.dataSource, metadata)} (${names.map((name) => this.driver.escape(column(name).databaseName)).join(', ')}) VALUES `;
    const tail = this.mysql ? ` ON DUPLICATE KEY UPDATE ${id} = ${id}` : ` ON CONFLICT (${id}) DO NOTHING`;
    const at = this.driver.preparePersistentValue(createdAt, column('createdAt')) as unknown;
    const entry = JSON.stringify(MARKER_ENTRY);
    const statements: Statement[] = [];
    for (let start = 0; start < unitIds.length; start += UNITS_PER_STATEMENT) {
      const params: unknown[] = [];
      const tuples: string[] = [];
      for (const unitId of unitIds.slice(start, start + UNITS_PER_STATEMENT)) {
        const first = params.length;
        params.push(unitId, unitId, unitId, at, entry);
        tuples.push(`(${names.map((_, i) => this.driver.createParameter(`m${first + i}`, first + i)).join(', ')})`);
      }
      statements.push({ sql: head + tuples.join(', ') + tail, params });
    }
    return statements;
  }

  /**
   * The DELETEs of the markers of `unitIds` ({@link markers}), and of no other journal row
   * of theirs. On MySQL/MariaDB a marker's id is its unit's: the ids are joined to the
   * journal by its primary key, one lookup per unit, which every journal table has (one
   * made by hand may lack the unit id index).
   */
  markerDeletes(unitIds: readonly string[]): Statement[] {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const table = escapedTable(this.dataSource, metadata);
    const id = this.driver.escape(metadata.findColumnWithPropertyName('id')!.databaseName);
    const unit = this.driver.escape(metadata.findColumnWithPropertyName('unitId')!.databaseName);
    const statements: Statement[] = [];
    for (let start = 0; start < unitIds.length; start += UNITS_PER_STATEMENT) {
      const params = unitIds.slice(start, start + UNITS_PER_STATEMENT);
      const sql = this.mysql
        ? `DELETE j FROM ${valuesTable(params.length, ['u'], 'k')} STRAIGHT_JOIN ${table} AS j FORCE INDEX (PRIMARY) ON j.${id} = k.u WHERE j.${unit} = k.u`
        : `DELETE FROM ${table} WHERE ${id} IN (${params.map((_, index) => this.driver.createParameter(`u${index}`, index)).join(', ')})`;
      statements.push({ sql, params });
    }
    return statements;
  }

  private journalStatements(): JournalStatements {
    const metadata = this.dataSource.getMetadata(AuditJournalEntity);
    const unit = metadata.findColumnWithPropertyName('unitId')!;
    const idColumn = metadata.findColumnWithPropertyName('id')!;
    const id = this.driver.escape(idColumn.databaseName);
    const instance = this.driver.escape(metadata.findColumnWithPropertyName('instanceId')!.databaseName);
    const table = escapedTable(this.dataSource, metadata);
    const column = this.driver.escape(unit.databaseName);
    const array = `::${this.driver.normalizeType(unit)}[]`;
    return {
      deleteAny: `DELETE FROM ${table} WHERE ${column} = ANY(${this.driver.createParameter('units', 0)}${array})`,
      deleteBefore: (index) => `journal AS (DELETE FROM ${table} WHERE ${column} = ANY(${this.driver.createParameter('units', index)}${array}))`,
      // Gone: a row of the guard that was not there, or a marker (its instance id is its own id).
      deleteChecked: (index) =>
        `journal AS (DELETE FROM ${table} WHERE ${column} = ANY(${this.driver.createParameter('units', index)}${array}) RETURNING ${id} AS id, ${instance} = ${id} AS marker), ` +
        `gone AS (SELECT e.id FROM unnest(${this.driver.createParameter('ids', index + 1)}::${this.driver.normalizeType(idColumn)}[]) AS e(id) WHERE e.id NOT IN (SELECT id FROM journal) ` +
        `UNION ALL SELECT id FROM journal WHERE marker)`,
    };
  }

  private statement(count: number, params: unknown[]): Statement {
    const width = this.columns.length;
    if (this.unnest) {
      const arrays: unknown[] = [];
      for (let column = 0; column < width; column++) {
        const values = new Array<unknown>(count);
        for (let row = 0; row < count; row++) values[row] = params[row * width + column];
        arrays.push(arrayLiteral(values));
      }
      return { sql: this.head + this.tail, params: arrays };
    }
    const { tuples } = this;
    for (let row = tuples.length; row < count; row++) {
      const placeholders: string[] = [];
      for (let column = 0; column < width; column++) {
        const index = row * width + column;
        placeholders.push(this.driver.createParameter(`p${index}`, index));
      }
      tuples.push(`(${placeholders.join(', ')})`);
    }
    const values = count === tuples.length ? tuples.join(', ') : tuples.slice(0, count).join(', ');
    return { sql: this.head + values + this.tail, params };
  }

  /** The row's exact size as MySQL's client sends it; throws if it cannot fit. */
  private checkExactSize(row: AuditLogEntity, params: readonly unknown[], byteLimit: number): void {
    let exact = this.head.length + this.tail.length + ROW_BYTES;
    for (let index = params.length - this.columns.length; index < params.length; index++) {
      const value = params[index];
      exact +=
        typeof value === 'string' ? Buffer.byteLength(value) + (value.match(MYSQL_ESCAPED)?.length ?? 0) + 4 : SCALAR_BYTES;
    }
    if (exact > byteLimit) throw new AuditEventTooLargeError(row.id, exact, byteLimit);
  }
}
