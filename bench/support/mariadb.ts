import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';

/** Where the benchmarks run on MariaDB/MySQL: the local server unless MYSQL_* variables say otherwise. */
export const MARIADB = {
  host: process.env['MYSQL_HOST'] ?? '127.0.0.1',
  port: Number(process.env['MYSQL_PORT'] ?? 3306),
  user: process.env['MYSQL_USER'] ?? 'root',
  password: process.env['MYSQL_PASSWORD'] ?? '',
};

/** TypeORM connection options for the benchmark database `database`. */
export const mariadbConnection = (database: string) =>
  ({
    type: 'mariadb',
    host: MARIADB.host,
    port: MARIADB.port,
    username: MARIADB.user,
    password: MARIADB.password,
    database,
  }) as const;

/** A database of the benchmark's own on the MariaDB server, dropped afterwards. */
export interface BenchDatabase {
  name: string;
  /** `` `database`.`table` ``, for SQL run outside TypeORM. */
  table(name: string): string;
  drop(): Promise<void>;
}

/** One mysql2 connection of its own to `database` (none: no default database), closed after `fn`. */
export async function withMariadb<T>(database: string | undefined, fn: (connection: mysql.Connection) => Promise<T>): Promise<T> {
  const connection = await mysql.createConnection({ ...MARIADB, ...(database ? { database } : {}), connectTimeout: 3000 });
  try {
    return await fn(connection);
  } finally {
    await connection.end();
  }
}

/** Creates an empty, uniquely named database, e.g. `bench_read_3fa9c1d2e4`. */
export async function createBenchDatabase(purpose: string): Promise<BenchDatabase> {
  const name = `bench_${purpose}_${randomBytes(5).toString('hex')}`;
  await withMariadb(undefined, (connection) => connection.query(`CREATE DATABASE \`${name}\``));
  return {
    name,
    table: (table) => `\`${name}\`.\`${table}\``,
    drop: () => withMariadb(undefined, async (connection) => void (await connection.query(`DROP DATABASE IF EXISTS \`${name}\``))),
  };
}

/** `MariaDB 11.4.2`, from the server's `version()`. */
export async function mariadbVersion(): Promise<string> {
  const [rows] = await withMariadb(undefined, (connection) => connection.query<mysql.RowDataPacket[]>('SELECT version() AS v'));
  return `MariaDB ${String(rows[0]?.['v'] ?? 'unknown').replace(/-MariaDB.*$/, '')}`;
}
