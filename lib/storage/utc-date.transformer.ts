import type { DataSource, Driver, ValueTransformer } from 'typeorm';
import { readDatesAsUtc } from '../integrations/driver-utc-date-reads.js';

/**
 * The module's date columns (`occurred_at`, `created_at`, `started_at`, `heartbeat_at`)
 * hold UTC wall-clock time, millisecond precision, whatever the time zone of the Node
 * process (`TZ`) or of the database session: PostgreSQL `timestamp(3)` and MySQL/MariaDB
 * `datetime(3)` have no time zone of their own, and SQLite keeps text.
 *
 * TypeORM alone writes a `Date` to PostgreSQL and MySQL/MariaDB in the process's local
 * time (node-postgres formats it with the local offset, which a `timestamp` column
 * drops; mysql2 formats it in its `timezone` option, `local` by default) and reads it
 * back the same way, so that two processes in different zones disagree by hours. On
 * SQLite it already writes and reads UTC. No transformer that sees only the value can
 * serve both: the same `Date` read from PostgreSQL needs converting and from SQLite does
 * not. So the columns carry {@link UTC_DATE_COLUMN}, which leaves values alone, and
 * {@link bindUtcDates} replaces it, in one data source's metadata, by the conversion for
 * that data source's driver.
 */
export const UTC_DATE_COLUMN: ValueTransformer = Object.freeze({
  to: (value: unknown): unknown => value,
  from: (value: unknown): unknown => value,
});

/** How a driver hands back a date it read: which clock the `Date` was built on. */
type Reading =
  /** As the UTC instant it stores (SQLite; mysql2 with `timezone: 'Z'`). */
  | { clock: 'utc' }
  /** From the stored wall-clock time read as local time (node-postgres; mysql2 by default). */
  | { clock: 'local' }
  /** From the stored wall-clock time read at a fixed offset (mysql2 with `timezone: '+09:00'`). */
  | { clock: 'offset'; minutes: number };

/**
 * A UTC wall-clock time as a parameter: node-postgres sends the text of `toPostgres()`,
 * mysql/mysql2 insert the literal of `toSqlString()`, so that neither converts it to the
 * process's or the session's zone. The text carries no offset, which a column without
 * time zone would drop (PostgreSQL) or refuse (MariaDB).
 */
export class UtcDateTimeParameter {
  constructor(
    /** `YYYY-MM-DD HH:MM:SS.mmm`, UTC. */
    readonly text: string,
  ) {}

  /** node-postgres' hook for custom parameter types. */
  toPostgres(): string {
    return this.text;
  }

  /** mysql's and mysql2's hook for custom parameter types: the quoted literal. */
  toSqlString(): string {
    return `'${this.text}'`;
  }

  toJSON(): string {
    return this.text;
  }

  toString(): string {
    return this.text;
  }
}

/** The conversion of a date column for one driver, as TypeORM applies a column transformer. */
export class UtcDateTransformer implements ValueTransformer {
  constructor(
    /** `date`: the driver writes a `Date` as UTC itself (SQLite); `text`: it must be given UTC text. */
    private readonly write: 'date' | 'text',
    private readonly reading: Reading,
  ) {}

  /** Entity value to database parameter. */
  to(value: unknown): unknown {
    if (value === null || value === undefined) return value;
    const date = value instanceof Date ? value : typeof value === 'string' || typeof value === 'number' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) return value;
    return this.write === 'date' ? date : new UtcDateTimeParameter(utcText(date));
  }

  /** Database value (as the driver and TypeORM made it) to the instant it stands for. */
  from(value: unknown): unknown {
    if (value === null || value === undefined) return value;
    const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) return value;
    switch (this.reading.clock) {
      case 'utc':
        return date;
      case 'local':
        return localFieldsAsUtc(date);
      case 'offset':
        return new Date(date.getTime() + this.reading.minutes * 60_000);
    }
  }
}

/**
 * Makes the module's date columns in `dataSource` hold and yield UTC, whatever the
 * process's or the session's time zone, by giving each column that carries
 * {@link UTC_DATE_COLUMN} the conversion for the data source's driver. Every TypeORM
 * path then applies it: entity reads, query builder parameters, and
 * `driver.preparePersistentValue`. Idempotent; call it after the data source is
 * initialised (`AuditModule` does, for its data source; call it yourself for another
 * data source that reads or writes the module's tables).
 *
 * On PostgreSQL (node-postgres) and MySQL/MariaDB (mysql2), statements that name one of
 * the module's tables also read `timestamp`/`datetime` values as UTC in the driver
 * ({@link readDatesAsUtc}): a `Date` built as local time cannot hold a wall-clock time in
 * the hour a daylight-saving change skips, which no later conversion could restore. The
 * data source's options, and the app's other statements, are left as they are. (With
 * mysql2's `dateStrings`, TypeORM itself reads the text as local time, and that hour is
 * not restored.)
 *
 * @example
 * const dataSource = await new DataSource({ ...options, entities: [...AuditEntities] }).initialize();
 * bindUtcDates(dataSource);
 */
export function bindUtcDates<T extends DataSource>(dataSource: T): T {
  if (!dataSource.isInitialized) return dataSource;
  const columns = dataSource.entityMetadatas.flatMap((metadata) =>
    metadata.columns.filter((column) => column.transformer === UTC_DATE_COLUMN || column.transformer instanceof UtcDateTransformer),
  );
  const tables = [...new Set(columns.map((column) => column.entityMetadata.tableName))];
  const transformer = readDatesAsUtc(dataSource, tables) ? new UtcDateTransformer('text', { clock: 'utc' }) : utcDateTransformer(dataSource.driver);
  for (const column of columns) column.transformer = transformer;
  return dataSource;
}

/** The conversion of the module's date columns for `driver`, as it reads dates without {@link readDatesAsUtc}. */
export function utcDateTransformer(driver: Driver): UtcDateTransformer {
  const options = driver.options as { type: string; timezone?: unknown; dateStrings?: unknown; extra?: Record<string, unknown> };
  switch (options.type) {
    case 'postgres':
      return new UtcDateTransformer('text', { clock: 'local' });
    case 'mysql':
    case 'mariadb': {
      const dateStrings = options.extra?.['dateStrings'] ?? options.dateStrings;
      const strings = dateStrings === true || (Array.isArray(dateStrings) && dateStrings.includes('DATETIME'));
      // TypeORM turns a date string into a Date as local time.
      if (strings) return new UtcDateTransformer('text', { clock: 'local' });
      return new UtcDateTransformer('text', mysqlReading(options.extra?.['timezone'] ?? options.timezone));
    }
    default:
      // SQLite (and drivers the module does not support): TypeORM keeps UTC itself.
      return new UtcDateTransformer('date', { clock: 'utc' });
  }
}

/** How mysql2 (or mysql) builds a DATETIME's `Date` under its `timezone` option. */
function mysqlReading(timezone: unknown): Reading {
  if (timezone === 'Z') return { clock: 'utc' };
  const offset = typeof timezone === 'string' ? /^([+-])(\d{2}):(\d{2})$/.exec(timezone) : null;
  if (offset) {
    const minutes = Number(offset[2]) * 60 + Number(offset[3]);
    return minutes === 0 ? { clock: 'utc' } : { clock: 'offset', minutes: offset[1] === '-' ? -minutes : minutes };
  }
  return { clock: 'local' };
}

/** The last instant written as text, and its text: events of one batch share their millisecond. */
let lastTime = Number.NaN;
let lastText = '';

/** `YYYY-MM-DD HH:MM:SS.mmm` of `date` in UTC. */
function utcText(date: Date): string {
  const time = date.getTime();
  if (time === lastTime) return lastText;
  const iso = date.toISOString();
  // Years past 9999 have a sign and more digits: only common ones take the short path.
  lastText = iso.length === 24 ? `${iso.slice(0, 10)} ${iso.slice(11, 23)}` : iso.slice(0, 23).replace('T', ' ');
  lastTime = time;
  return lastText;
}

/** The instant whose UTC fields are `date`'s local fields. */
function localFieldsAsUtc(date: Date): Date {
  const utc = new Date(
    Date.UTC(date.getFullYear(), date.getMonth(), date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds(), date.getMilliseconds()),
  );
  // Date.UTC reads years 0-99 as 1900-1999.
  if (date.getFullYear() < 100) utc.setUTCFullYear(date.getFullYear());
  return utc;
}
