import type { DataSource } from 'typeorm';

/**
 * Reading the module's date columns as UTC, in the driver.
 *
 * node-postgres, and mysql2 with its default `timezone: 'local'`, build a `Date` from a
 * `timestamp`/`datetime` as local time. Such a `Date` cannot hold a wall-clock time the
 * process's zone skips (02:30 on the night Europe/Berlin moves to summer time becomes
 * 03:30), so a conversion applied afterwards cannot restore it. Instead, each statement
 * that names one of the module's tables is given a per-statement reading that builds the
 * `Date` from the stored UTC fields: node-postgres' `types` (a parser for `timestamp
 * without time zone`, the client's own parsers for every other type) and mysql2's
 * `timezone: 'Z'`. Other statements, the app's, are sent as they were, and the data
 * source's options are not changed.
 */

/** `timestamp without time zone`. */
const TIMESTAMP_OID = 1114;

/** node-postgres' per-query type parsers. */
interface PgTypes {
  getTypeParser(oid: number, format?: string): (value: string) => unknown;
}

/** The part of a node-postgres client this file uses. */
interface PgClient extends PgTypes {
  query(config: unknown, values?: unknown, callback?: unknown): unknown;
}

/** The part of a mysql2 connection this file uses. */
interface MysqlConnection {
  query(sql: unknown, values?: unknown, callback?: unknown): unknown;
}

/** The escaped names of the module's tables that have date columns, for one data source, as one pattern. */
interface Tables {
  pattern: RegExp;
}

/** One pattern matching any of `names` (one scan of a statement, where a search per name would take one each). */
function namesPattern(names: readonly string[]): RegExp {
  return new RegExp(names.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|') || '(?!)');
}

const PREPARED = Symbol('nestjs-system-audit.utcDateReads');

/** Per data source: the tables whose statements read dates as UTC. */
const tablesOf = new WeakMap<object, Tables>();

/**
 * Makes statements naming one of `tableNames` read `timestamp`/`datetime` values as UTC
 * on `dataSource`'s connections. Returns whether the driver is one it does this for
 * (PostgreSQL through node-postgres; MySQL/MariaDB through mysql2 or mysql without
 * `dateStrings`); idempotent, the last call's table names apply.
 */
export function readDatesAsUtc(dataSource: DataSource, tableNames: readonly string[]): boolean {
  const driver = dataSource.driver as unknown as Record<string, unknown> & { options: { type: string } };
  const type = driver.options.type;
  const pattern = namesPattern(tableNames.map((name) => dataSource.driver.escape(name)));
  const known = tablesOf.get(driver);
  if (known) {
    known.pattern = pattern;
    return true;
  }
  const tables: Tables = { pattern };
  if (type === 'postgres') {
    const pools = [driver['master'], ...((driver['slaves'] as unknown[] | undefined) ?? [])];
    if (!pools.every(isEmitter)) return false;
    tablesOf.set(driver, tables);
    for (const pool of pools) (pool as NodeJS.EventEmitter).on('acquire', (client: PgClient) => preparePg(client, tables));
  } else if (type === 'mysql' || type === 'mariadb') {
    const options = driver.options as { dateStrings?: unknown; extra?: Record<string, unknown> };
    // With dateStrings the driver hands back text, which TypeORM reads as local time itself.
    const dateStrings = options.extra?.['dateStrings'] ?? options.dateStrings;
    if (dateStrings === true || (Array.isArray(dateStrings) && dateStrings.includes('DATETIME'))) return false;
    const prepare = driver['prepareDbConnection'];
    if (typeof prepare !== 'function') return false;
    tablesOf.set(driver, tables);
    driver['prepareDbConnection'] = function (this: unknown, connection: MysqlConnection): unknown {
      return prepareMysql(prepare.call(this, connection) as MysqlConnection, tables);
    };
  } else {
    return false;
  }
  // Connections already handed out (a transaction in progress) are prepared as well.
  for (const runner of (driver['connectedQueryRunners'] as Array<{ databaseConnection?: unknown }> | undefined) ?? []) {
    if (!runner.databaseConnection) continue;
    if (type === 'postgres') preparePg(runner.databaseConnection as PgClient, tables);
    else prepareMysql(runner.databaseConnection as MysqlConnection, tables);
  }
  return true;
}

function isEmitter(value: unknown): boolean {
  return typeof (value as { on?: unknown } | undefined)?.on === 'function';
}

/** Whether `sql` names one of the tables. */
function namesTable(sql: string, tables: Tables): boolean {
  return tables.pattern.test(sql);
}

function preparePg(client: PgClient & { [PREPARED]?: true }, tables: Tables): void {
  if (client[PREPARED]) return;
  client[PREPARED] = true;
  const query = client.query;
  const style = watchDateStyle(client);
  let types: PgTypes | undefined;
  client.query = function (this: PgClient, config: unknown, values?: unknown, callback?: unknown): unknown {
    if (typeof config === 'string' && namesTable(config, tables)) {
      // Queued before the statement on the same connection, so known when its rows are read.
      if (style && !style.asked) askDateStyle(this, query, style);
      types ??= utcTypes(client, style);
      config = { text: config, types };
    }
    return query.call(this, config, values, callback);
  };
}

/**
 * What the session's DateStyle makes PostgreSQL send for a `timestamp`: day before month
 * (`DMY`) or not, for the non-ISO styles. Known from a `SHOW DateStyle` sent once, before
 * the connection's first statement on the module's tables, then from the `ParameterStatus`
 * messages PostgreSQL sends when a `SET` changes it.
 */
interface DateStyle {
  asked: boolean;
  dayFirst: boolean | undefined;
}

/** The connection's DateStyle, followed as PostgreSQL reports it; undefined where the client does not expose its messages. */
function watchDateStyle(client: PgClient): DateStyle | undefined {
  const connection = (client as { connection?: { on?: unknown } }).connection;
  if (!isEmitter(connection)) return undefined;
  const style: DateStyle = { asked: false, dayFirst: undefined };
  (connection as NodeJS.EventEmitter).on('parameterStatus', (message: { parameterName?: string; parameterValue?: string }) => {
    if (message.parameterName === 'DateStyle' && typeof message.parameterValue === 'string') style.dayFirst = isDayFirst(message.parameterValue);
  });
  return style;
}

function askDateStyle(client: PgClient, query: PgClient['query'], style: DateStyle): void {
  style.asked = true;
  const asked = query.call(client, 'SHOW DateStyle') as Promise<{ rows?: Array<Record<string, unknown>> }> | undefined;
  asked?.then?.(
    (result) => {
      const value = result.rows?.[0]?.['DateStyle'];
      // Messages arrive in order: a SET sent after it reports its value after this answer.
      if (typeof value === 'string') style.dayFirst = isDayFirst(value);
    },
    () => {
      // An aborted transaction refuses it: asked again on the next statement.
      style.asked = false;
    },
  );
}

/** `SQL, DMY` → true: the SQL, Postgres and German styles then write the day first. */
const isDayFirst = (value: string): boolean => /\bDMY\b/i.test(value) || /^\s*German\b/i.test(value);

/** The client's type parsers, except `timestamp without time zone`, read as UTC. */
function utcTypes(client: PgTypes, style: DateStyle | undefined): PgTypes {
  const local = client.getTypeParser(TIMESTAMP_OID, 'text');
  const parse = (text: string): unknown => pgTimestampAsUtc(text, local, style?.dayFirst);
  return {
    getTypeParser: (oid, format) => (oid === TIMESTAMP_OID && (format ?? 'text') === 'text' ? parse : client.getTypeParser(oid, format)),
  };
}

function prepareMysql(connection: MysqlConnection & { [PREPARED]?: true }, tables: Tables): MysqlConnection {
  if (connection[PREPARED]) return connection;
  connection[PREPARED] = true;
  const query = connection.query;
  connection.query = function (this: MysqlConnection, sql: unknown, values?: unknown, callback?: unknown): unknown {
    if (typeof sql === 'string') {
      if (namesTable(sql, tables)) sql = { sql, timezone: 'Z' };
    } else if (sql && sql.constructor === Object && typeof (sql as { sql?: unknown }).sql === 'string' && namesTable((sql as { sql: string }).sql, tables)) {
      sql = { ...sql, timezone: 'Z' };
    }
    return query.call(this, sql, values, callback);
  };
  return connection;
}

const DIGIT_0 = 48;

/**
 * The instant whose UTC fields are the `timestamp without time zone` text PostgreSQL sends:
 * ISO (`YYYY-MM-DD HH:MM:SS[.f…]`, the default DateStyle), or, when `dayFirst` says in
 * which order the session writes day and month, the SQL (`12/06/2026 10:11:12.345`),
 * German (`06.12.2026 …`) and Postgres (`Sun Dec 06 10:11:12.345 2026`) styles. Other
 * forms (years past 9999 in the non-ISO styles, BC, infinity) go through the client's own
 * parser, whose local-time fields are then read as UTC.
 */
export function pgTimestampAsUtc(text: string, local: (value: string) => unknown, dayFirst?: boolean): unknown {
  const n = text.length;
  if (n >= 19 && text.charCodeAt(4) === 45 && text.charCodeAt(10) === 32 && text.charCodeAt(13) === 58 && text.charCodeAt(16) === 58 && (n === 19 || (text.charCodeAt(19) === 46 && !text.endsWith('BC')))) {
    const d = (i: number): number => text.charCodeAt(i) - DIGIT_0;
    const year = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
    return utcDate(year, d(5) * 10 + d(6), d(8) * 10 + d(9), d(11) * 10 + d(12), d(14) * 10 + d(15), d(17) * 10 + d(18), text, 20);
  }
  const other = otherStyle(text, dayFirst);
  if (other) return other;
  const value = local(text);
  if (!(value instanceof Date)) return value;
  const utc = new Date(
    Date.UTC(value.getFullYear(), value.getMonth(), value.getDate(), value.getHours(), value.getMinutes(), value.getSeconds(), value.getMilliseconds()),
  );
  if (value.getFullYear() < 100) utc.setUTCFullYear(value.getFullYear());
  return utc;
}

/** The date of these UTC fields, with the milliseconds read from `text`'s fraction at `fraction` (the digits after the dot). */
function utcDate(year: number, month: number, day: number, hours: number, minutes: number, seconds: number, text: string, fraction: number): Date {
  let ms = 0;
  for (let i = fraction, scale = 100; i < text.length && scale >= 1; i++, scale /= 10) {
    const digit = text.charCodeAt(i) - DIGIT_0;
    if (digit < 0 || digit > 9) break;
    ms += digit * scale;
  }
  const date = new Date(Date.UTC(year, month - 1, day, hours, minutes, seconds, ms));
  // Date.UTC reads years 0-99 as 1900-1999.
  if (year < 100) date.setUTCFullYear(year);
  return date;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** `12/06/2026 10:11:12[.345]` (SQL) or `06.12.2026 10:11:12[.345]` (German). */
const NUMERIC_STYLE = /^(\d\d)([/.])(\d\d)\2(\d{4}) (\d\d):(\d\d):(\d\d)(\.\d+)?$/;
/** `Sun Dec 06 10:11:12[.345] 2026` (Postgres, MDY) or `Sun 06 Dec 10:11:12[.345] 2026` (DMY). */
const POSTGRES_STYLE = /^[A-Z][a-z]{2} (?:([A-Z][a-z]{2}) (\d\d)|(\d\d) ([A-Z][a-z]{2})) (\d\d):(\d\d):(\d\d)(\.\d+)? (\d{4})$/;

/** A timestamp in the SQL, German or Postgres DateStyle, read as UTC; undefined for another form, or SQL's when the order of day and month is not known. */
function otherStyle(text: string, dayFirst: boolean | undefined): Date | undefined {
  const numeric = NUMERIC_STYLE.exec(text);
  if (numeric) {
    const german = numeric[2] === '.';
    if (!german && dayFirst === undefined) return undefined;
    const [first, second] = [Number(numeric[1]), Number(numeric[3])];
    const [day, month] = german || dayFirst ? [first, second] : [second, first];
    return utcDate(Number(numeric[4]), month, day, Number(numeric[5]), Number(numeric[6]), Number(numeric[7]), numeric[8] ?? '', 1);
  }
  const named = POSTGRES_STYLE.exec(text);
  if (named) {
    const month = MONTHS.indexOf(named[1] ?? named[4]!) + 1;
    if (month === 0) return undefined;
    return utcDate(Number(named[9]), month, Number(named[2] ?? named[3]), Number(named[5]), Number(named[6]), Number(named[7]), named[8] ?? '', 1);
  }
  return undefined;
}
