import { mkdirSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import type { TypeOrmModuleOptions } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';

/** Where the sample keeps its tables on PostgreSQL, so it shares no table with other users of the database. */
export const POSTGRES_SCHEMA = 'sample_app';

export interface DatabaseConfig {
  kind: 'sqlite' | 'postgres' | 'mariadb';
  /** For the start-up message; never shows a password. */
  label: string;
  /** Connection options for `TypeOrmModule.forRoot()`. */
  connection: TypeOrmModuleOptions;
  /** Creates what must exist before TypeORM connects: the SQLite folder, the PostgreSQL schema, the MariaDB database. */
  prepare(): Promise<void>;
}

/**
 * Reads `DATABASE_URL`-style input: `postgres://…` (tables in the `sample_app` schema of the
 * URL's database, both created if missing),
 * `mysql://…` or `mariadb://…` (tables in the URL's database, created if missing), or
 * else a SQLite file path (`:memory:` for a throwaway database).
 */
export function databaseConfig(database: string): DatabaseConfig {
  const scheme = /^([a-z0-9+]+):\/\//i.exec(database)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    return {
      kind: 'sqlite',
      label: `SQLite ${database === ':memory:' ? database : relative(process.cwd(), database)}`,
      connection: { type: 'better-sqlite3', database },
      prepare: async () => {
        if (database !== ':memory:') mkdirSync(dirname(database), { recursive: true });
      },
    };
  }
  const url = new URL(database);
  if (url.password) url.password = '***';
  if (scheme === 'postgres' || scheme === 'postgresql') {
    return {
      kind: 'postgres',
      label: `PostgreSQL ${url.href} (schema ${POSTGRES_SCHEMA})`,
      connection: { type: 'postgres', url: database, schema: POSTGRES_SCHEMA },
      prepare: async () => {
        await createPostgresDatabase(database);
        await withConnection({ type: 'postgres', url: database }, `CREATE SCHEMA IF NOT EXISTS "${POSTGRES_SCHEMA}"`);
      },
    };
  }
  if (scheme === 'mysql' || scheme === 'mariadb') {
    const name = decodeURIComponent(new URL(database).pathname.slice(1));
    if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`DATABASE_URL must name a database, e.g. ${scheme}://root@127.0.0.1:3306/sample_app`);
    const server = new URL(database);
    server.pathname = '/';
    return {
      kind: 'mariadb',
      label: `MariaDB ${url.href}`,
      connection: { type: 'mariadb', url: database },
      prepare: () => withConnection({ type: 'mariadb', url: server.href }, `CREATE DATABASE IF NOT EXISTS \`${name}\``),
    };
  }
  throw new Error(`DATABASE_URL: unsupported scheme "${scheme}:" (use postgres://, mysql:// or mariadb://, or leave it unset for SQLite)`);
}

async function withConnection(options: { type: 'postgres' | 'mariadb'; url: string }, sql: string): Promise<void> {
  const dataSource = await new DataSource(options).initialize();
  try {
    await dataSource.query(sql);
  } finally {
    await dataSource.destroy();
  }
}

/** Creates the URL's PostgreSQL database when it does not exist (connecting to the server's `postgres` database). */
async function createPostgresDatabase(database: string): Promise<void> {
  const name = decodeURIComponent(new URL(database).pathname.slice(1));
  if (name === '' || name === 'postgres') return;
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`DATABASE_URL must name a database, e.g. postgres://postgres@127.0.0.1:5432/orders_sample`);
  const server = new URL(database);
  server.pathname = '/postgres';
  const dataSource = await new DataSource({ type: 'postgres', url: server.href }).initialize();
  try {
    const rows: unknown[] = await dataSource.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rows.length === 0) await dataSource.query(`CREATE DATABASE "${name}"`);
  } finally {
    await dataSource.destroy();
  }
}
