import type { DataSource, EntityMetadata } from 'typeorm';

/** The escaped, schema-qualified table name of an entity, as the data source's driver writes it. */
export function escapedTable(connection: DataSource, metadata: EntityMetadata): string {
  const driver = connection.driver;
  return metadata.tablePath
    .split('.')
    .map((part) => (part === '' ? part : driver.escape(part)))
    .join('.');
}

/** Placeholders `$1, $2` (PostgreSQL) or `?, ?` for `count` parameters starting at `offset`. */
export function placeholders(connection: DataSource, count: number, offset: number): string {
  const driver = connection.driver;
  const list: string[] = [];
  for (let i = 0; i < count; i++) list.push(driver.createParameter(`p${offset + i}`, offset + i));
  return list.join(', ');
}

/**
 * MySQL/MariaDB: `rows` rows of `columns` (`?` parameters, row after row) as a derived table
 * `alias`, the first table of a join that reads another one key at a time
 * (`… AS k STRAIGHT_JOIN t ON t.c = k.u`). A list `c IN (…)` that names most of a small
 * table's rows — a fifth of a large one's, past 200 values — was read as a scan of the
 * whole table, index hint or not; and an UPDATE, a DELETE or a locking read that scans
 * locks every row it reads, other transactions' rows too (rows they are inserting:
 * it waits for them, and their next inserts wait for it).
 */
export function valuesTable(rows: number, columns: readonly string[], alias: string): string {
  const first = `SELECT ${columns.map((column) => `? AS ${column}`).join(', ')}`;
  const next = `SELECT ${columns.map(() => '?').join(', ')}`;
  return `(${Array.from({ length: rows }, (_, index) => (index === 0 ? first : next)).join(' UNION ALL ')}) AS ${alias}`;
}
