import type { DataSource, QueryRunner, SelectQueryBuilder } from 'typeorm';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { strictJsonProblem } from './strict-json.js';

/** The JSON columns of `audit_log`. */
const JSON_FIELDS = ['changes', 'context', 'error'] as const;

/** A JSON column of `audit_log`, by its property name. */
export type StoredJsonField = (typeof JSON_FIELDS)[number];

/** An `audit_log` row, and whether its JSON columns hold text the module wrote. */
export interface StoredEvent {
  row: AuditLogEntity;
  /**
   * The stored text of each JSON column that holds no JSON at all (the row's field is then
   * `null`): only a row changed by hand holds one.
   */
  unreadable?: Partial<Record<StoredJsonField, string>>;
  /**
   * With `{ time: true }`: `occurred_at` as the database stores it (SQLite's value as it is,
   * text or a number; the others' as text), for a time that cannot be read or given back.
   */
  storedTime?: unknown;
  /**
   * Why a JSON column's stored text is not one the module wrote (see
   * `strictJsonProblem`), or holds the JSON text `null` where the module stores SQL NULL:
   * the row does not say to every reader what its parsed value says, so it is neither
   * sequenced nor taken as the event that was signed.
   */
  problem?: string;
}

/** The raw column a JSON field's stored text is read into. */
const textAlias = (field: string): string => `stored_${field}`;

/**
 * Reads the rows of `query` (over `audit_log`; its selection is replaced) with the JSON
 * columns as the text the database stores, checked with `strictJsonProblem` and parsed
 * as the driver would (`JSON.parse`). The drivers hand PostgreSQL's `json` and MariaDB's
 * JSON back parsed, so they are selected as text (see `storedTextOf`). MySQL's own JSON
 * type is left to mysql2: MySQL keeps JSON in a binary form of its own, with no repeated
 * members and numbers it writes itself, so there is no text of the module's to check.
 * With `time`, `occurred_at` is read as stored too (`storedTime`). With `check: false` (a
 * reader, not `verify()`), the stored text is only parsed: no `problem` is looked for.
 */
export async function readStoredEvents(query: SelectQueryBuilder<AuditLogEntity>, options: { time?: boolean; check?: boolean } = {}): Promise<StoredEvent[]> {
  const alias = query.alias;
  const dataSource = query.connection;
  const metadata = dataSource.getMetadata(AuditLogEntity);
  const json = new Set<string>(JSON_FIELDS);
  query.select(metadata.columns.filter((column) => !json.has(column.propertyName)).map((column) => `${alias}.${column.propertyName}`));
  // Asked on the query's own connection when it has one (a transaction holding the pool's only connection).
  const runner = (query as unknown as { queryRunner?: QueryRunner }).queryRunner;
  const asText = await storedTextOf(dataSource, (sql) => (runner && !runner.isReleased ? runner.query(sql) : dataSource.query(sql)));
  for (const field of JSON_FIELDS) {
    const column = `${query.escape(alias)}.${query.escape(metadata.findColumnWithPropertyName(field)!.databaseName)}`;
    query.addSelect(asText(column), textAlias(field));
  }
  if (options.time) {
    const column = `${query.escape(alias)}.${query.escape(metadata.findColumnWithPropertyName('occurredAt')!.databaseName)}`;
    query.addSelect(timeAsStored(dataSource, column), STORED_TIME);
  }
  const { entities, raw } = await query.callListeners(false).getRawAndEntities<Record<string, unknown>>();
  // No join: one raw row per entity, in the same order.
  return entities.map((row, index) => {
    const event = storedEvent(row, raw[index]!, options.check !== false);
    return options.time ? { ...event, storedTime: raw[index]![STORED_TIME] } : event;
  });
}

/** The raw column `occurred_at` is read into, as stored. */
const STORED_TIME = 'stored_occurred_at';

/**
 * `occurred_at` selected as the database stores it: SQLite's value itself (it keeps what
 * it was given, text or a number), the others' as text (a `Date` cannot hold PostgreSQL's
 * `infinity` or MariaDB's zero date).
 */
function timeAsStored(dataSource: DataSource, column: string): string {
  const type = String(dataSource.driver.options.type);
  if (type === 'postgres') return `CAST(${column} AS text)`;
  if (type === 'mysql' || type === 'mariadb' || type === 'aurora-mysql') return `CAST(${column} AS CHAR)`;
  return column;
}

/** Per data source: how a JSON column is selected as its stored text. */
const textOf = new WeakMap<DataSource, Promise<(column: string) => string>>();

/**
 * How a JSON column is selected as its stored text: PostgreSQL `CAST(… AS text)` (`json`
 * keeps the text as given); MariaDB `CAST(… AS CHAR)` (its JSON is LONGTEXT, which mysql2
 * hands back parsed); SQLite the column itself. MySQL's own JSON type is selected as it is
 * (asked once per data source: `VERSION()` names MariaDB).
 */
function storedTextOf(dataSource: DataSource, ask: (sql: string) => Promise<unknown>): Promise<(column: string) => string> {
  let found = textOf.get(dataSource);
  if (!found) {
    found = (async () => {
      const type = String(dataSource.driver.options.type);
      if (type === 'postgres') return (column: string) => `CAST(${column} AS text)`;
      if (type !== 'mysql' && type !== 'mariadb' && type !== 'aurora-mysql') return (column: string) => column;
      const [row] = (await ask('SELECT VERSION() AS v')) as Array<{ v: unknown }>;
      return /mariadb/i.test(String(row?.v)) ? (column: string) => `CAST(${column} AS CHAR)` : (column: string) => column;
    })();
    found.catch(() => textOf.delete(dataSource));
    textOf.set(dataSource, found);
  }
  return found;
}

function storedEvent(row: AuditLogEntity, raw: Record<string, unknown>, check: boolean): StoredEvent {
  let problem: string | undefined;
  let unreadable: Partial<Record<StoredJsonField, string>> | undefined;
  const fields = row as unknown as Record<string, unknown>;
  for (const field of JSON_FIELDS) {
    const stored = raw[textAlias(field)];
    if (stored === null || stored === undefined || typeof stored !== 'string') {
      fields[field] = stored ?? null;
      continue;
    }
    const found = check ? strictJsonProblem(stored) : undefined;
    if (found) problem ??= `its stored ${field} is not JSON the module writes: ${found}`;
    try {
      fields[field] = JSON.parse(stored);
      // The module stores an absent value as SQL NULL, never as the JSON text `null`: the two
      // parse alike, so only the stored text tells that the row was changed.
      if (check && fields[field] === null) problem ??= `its stored ${field} is the JSON text null, where the module stores SQL NULL`;
    } catch (error) {
      fields[field] = null;
      (unreadable ??= {})[field] = stored;
      problem ??= `its stored ${field} is not JSON (${(error as Error).message})`;
    }
  }
  return { row, ...(problem === undefined ? {} : { problem }), ...(unreadable ? { unreadable } : {}) };
}
