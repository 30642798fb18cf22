import type { DataSource } from 'typeorm';

/** TypeORM's driver types of SQLite. */
export const SQLITE_DRIVERS: ReadonlySet<string> = new Set(['sqlite', 'better-sqlite3', 'sqljs', 'capacitor', 'cordova', 'expo', 'react-native', 'nativescript']);

/** True for a data source on SQLite (any of TypeORM's SQLite drivers). */
export function isSqlite(dataSource: DataSource): boolean {
  return SQLITE_DRIVERS.has(dataSource.options.type);
}
