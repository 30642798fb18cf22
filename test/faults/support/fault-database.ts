import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { DataSourceOptions } from 'typeorm';
import { MARIADB, POSTGRES } from '../../support/database-probe.js';
import type { FaultAppConfig } from '../fault-app.module.js';
import { FAULT_ITEM_TABLE } from '../fault-item.entity.js';

export type FaultDatabaseKind = 'postgres' | 'mariadb';

/** One row of `fault_item`, as the runner reads it. */
export interface ItemRow {
  id: string;
  revision: number;
  /** The `x-request-id` of the call that inserted it. */
  requestId: string | null;
}

/** The `audit_log` columns the runner checks, `changes` and `context` parsed. */
export interface AuditRow {
  id: string;
  action: string;
  kind: string;
  outcome: string;
  requestId: string | null;
  changes: unknown;
  context: unknown;
}

/**
 * A schema (PostgreSQL) or database (MariaDB) of one scenario's own, read directly on
 * the real server, never through the proxy the app goes through.
 */
export interface FaultDatabase {
  kind: FaultDatabaseKind;
  name: string;
  /** The app's connection settings, with the port of the proxy in front of the server. */
  appConfig(proxyPort: number, recoverAfter: number): FaultAppConfig;
  /** The real server, for the proxy. */
  server: { host: string; port: number };
  /** TypeORM connection options for the real server (not the proxy), without entities. */
  dataSourceOptions(): DataSourceOptions;
  /** Creates `fault_item` (the app does not synchronise it). */
  createItemTable(): Promise<void>;
  /** Rows in `audit_journal`; `undefined` when the table does not exist (yet). */
  journalCount(): Promise<number | undefined>;
  items(): Promise<ItemRow[]>;
  auditRows(): Promise<AuditRow[]>;
  drop(): Promise<void>;
}

const parseJson = (value: unknown): unknown => {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
};

const toAuditRow = (row: Record<string, unknown>): AuditRow => ({
  id: String(row['id']),
  action: String(row['action']),
  kind: String(row['kind']),
  outcome: String(row['outcome']),
  requestId: row['request_id'] === null || row['request_id'] === undefined ? null : String(row['request_id']),
  changes: parseJson(row['changes']),
  context: parseJson(row['context']),
});

const AUDIT_COLUMNS = 'id, action, kind, outcome, request_id, changes, context';

async function withPostgres<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...POSTGRES, connectionTimeoutMillis: 5000, statement_timeout: 60_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function withMariadb<T>(database: string | undefined, fn: (connection: mysql.Connection) => Promise<T>): Promise<T> {
  const connection = await mysql.createConnection({ ...MARIADB, ...(database ? { database } : {}), connectTimeout: 5000 });
  try {
    return await fn(connection);
  } finally {
    await connection.end();
  }
}

const isMissingTable = (error: unknown): boolean => {
  const code = (error as { code?: string }).code;
  return code === '42P01' || code === 'ER_NO_SUCH_TABLE';
};

function postgresDatabase(name: string): FaultDatabase {
  const table = (t: string) => `"${name}"."${t}"`;
  return {
    kind: 'postgres',
    name,
    server: { host: POSTGRES.host, port: POSTGRES.port },
    dataSourceOptions: () => ({
      type: 'postgres',
      host: POSTGRES.host,
      port: POSTGRES.port,
      username: POSTGRES.user,
      password: POSTGRES.password,
      database: POSTGRES.database,
      schema: name,
    }),
    appConfig: (proxyPort, recoverAfter) => ({
      type: 'postgres',
      host: '127.0.0.1',
      port: proxyPort,
      username: POSTGRES.user,
      password: POSTGRES.password,
      database: POSTGRES.database,
      schema: name,
      recoverAfter,
    }),
    createItemTable: () =>
      withPostgres(async (client) => {
        await client.query(
          `CREATE TABLE ${table(FAULT_ITEM_TABLE)} (id serial PRIMARY KEY, request_id varchar(128), label varchar(255) NOT NULL, ` +
            'value int NOT NULL DEFAULT 0, revision int NOT NULL DEFAULT 1, note text, payload json)',
        );
      }),
    journalCount: () =>
      withPostgres(async (client) => {
        try {
          const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table('audit_journal')}`);
          return Number(rows[0]?.n ?? 0);
        } catch (error) {
          if (isMissingTable(error)) return undefined;
          throw error;
        }
      }),
    items: () =>
      withPostgres(async (client) => {
        const { rows } = await client.query<{ id: number; revision: number; request_id: string | null }>(
          `SELECT id, revision, request_id FROM ${table(FAULT_ITEM_TABLE)}`,
        );
        return rows.map((row) => ({ id: String(row.id), revision: Number(row.revision), requestId: row.request_id }));
      }),
    auditRows: () =>
      withPostgres(async (client) => {
        try {
          const { rows } = await client.query<Record<string, unknown>>(`SELECT ${AUDIT_COLUMNS} FROM ${table('audit_log')}`);
          return rows.map(toAuditRow);
        } catch (error) {
          if (isMissingTable(error)) return [];
          throw error;
        }
      }),
    drop: () => withPostgres(async (client) => void (await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`))),
  };
}

function mariadbDatabase(name: string): FaultDatabase {
  return {
    kind: 'mariadb',
    name,
    server: { host: MARIADB.host, port: MARIADB.port },
    dataSourceOptions: () => ({
      type: 'mariadb',
      host: MARIADB.host,
      port: MARIADB.port,
      username: MARIADB.user,
      password: MARIADB.password,
      database: name,
    }),
    appConfig: (proxyPort, recoverAfter) => ({
      type: 'mariadb',
      host: '127.0.0.1',
      port: proxyPort,
      username: MARIADB.user,
      password: MARIADB.password,
      database: name,
      recoverAfter,
    }),
    createItemTable: () =>
      withMariadb(name, async (connection) => {
        await connection.query(
          `CREATE TABLE \`${FAULT_ITEM_TABLE}\` (id int AUTO_INCREMENT PRIMARY KEY, request_id varchar(128), label varchar(255) NOT NULL, ` +
            'value int NOT NULL DEFAULT 0, revision int NOT NULL DEFAULT 1, note longtext, payload json) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4',
        );
      }),
    journalCount: () =>
      withMariadb(name, async (connection) => {
        try {
          const [rows] = await connection.query<mysql.RowDataPacket[]>('SELECT count(*) AS n FROM `audit_journal`');
          return Number(rows[0]?.['n'] ?? 0);
        } catch (error) {
          if (isMissingTable(error)) return undefined;
          throw error;
        }
      }),
    items: () =>
      withMariadb(name, async (connection) => {
        const [rows] = await connection.query<mysql.RowDataPacket[]>(`SELECT id, revision, request_id FROM \`${FAULT_ITEM_TABLE}\``);
        return rows.map((row) => ({ id: String(row['id']), revision: Number(row['revision']), requestId: (row['request_id'] as string | null) ?? null }));
      }),
    auditRows: () =>
      withMariadb(name, async (connection) => {
        try {
          const [rows] = await connection.query<mysql.RowDataPacket[]>(`SELECT ${AUDIT_COLUMNS} FROM \`audit_log\``);
          return rows.map((row) => toAuditRow(row));
        } catch (error) {
          if (isMissingTable(error)) return [];
          throw error;
        }
      }),
    drop: () => withMariadb(undefined, async (connection) => void (await connection.query(`DROP DATABASE IF EXISTS \`${name}\``))),
  };
}

/** Creates an empty, uniquely named schema or database, e.g. `audit_f_3fa9c1d2e4`. */
export async function createFaultDatabase(kind: FaultDatabaseKind): Promise<FaultDatabase> {
  const name = `audit_f_${randomBytes(5).toString('hex')}`;
  if (kind === 'postgres') {
    await withPostgres((client) => client.query(`CREATE SCHEMA "${name}"`));
    return postgresDatabase(name);
  }
  await withMariadb(undefined, (connection) => connection.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`));
  return mariadbDatabase(name);
}
