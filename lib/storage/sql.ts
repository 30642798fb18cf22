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
