import type { DataSource } from 'typeorm';

/** TypeORM's driver types of SQLite. */
export const SQLITE_DRIVERS: ReadonlySet<string> = new Set(['sqlite', 'better-sqlite3', 'sqljs', 'capacitor', 'cordova', 'expo', 'react-native', 'nativescript']);

/** TypeORM's driver types of MySQL and MariaDB. */
export const MYSQL_DRIVERS: ReadonlySet<string> = new Set(['mysql', 'mariadb', 'aurora-mysql']);

/** True for a data source on SQLite (any of TypeORM's SQLite drivers). */
export function isSqlite(dataSource: DataSource): boolean {
  return SQLITE_DRIVERS.has(String(dataSource.driver.options.type));
}
