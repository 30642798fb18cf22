import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { DataSourceOptions } from 'typeorm';
import { inject } from 'vitest';
import { MARIADB, POSTGRES, type DatabaseKind } from './database-probe.js';

export type { DatabaseKind };

/** The databases this run tests against (SQLite always; the others when reachable). */
export const databases = (): DatabaseKind[] => inject('databases');

/** A database (PostgreSQL schema, MariaDB database or SQLite memory) of one's own. */
export interface TestDatabase {
  kind: DatabaseKind;
  options: DataSourceOptions;
  drop(): Promise<void>;
}

/** Creates an empty, uniquely named database for one suite. */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  const name = `audit_t_${randomBytes(5).toString('hex')}`;
  switch (kind) {
    case 'sqlite':
      return { kind, options: { type: 'better-sqlite3', database: ':memory:' }, drop: async () => undefined };
    case 'postgres': {
      const admin = new pg.Client(POSTGRES);
      await admin.connect();
      await admin.query(`CREATE SCHEMA "${name}"`);
      await admin.end();
      return {
        kind,
        options: {
          type: 'postgres',
          host: POSTGRES.host,
          port: POSTGRES.port,
          username: POSTGRES.user,
          password: POSTGRES.password,
          database: POSTGRES.database,
          schema: name,
          extra: { max: 20 },
        },
        drop: async () => {
          const client = new pg.Client(POSTGRES);
          await client.connect();
          await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
          await client.end();
        },
      };
    }
    case 'mariadb': {
      const admin = await mysql.createConnection(MARIADB);
      await admin.query(`CREATE DATABASE \`${name}\``);
      await admin.end();
      return {
        kind,
        options: {
          type: 'mariadb',
          host: MARIADB.host,
          port: MARIADB.port,
          username: MARIADB.user,
          password: MARIADB.password,
          database: name,
          extra: { connectionLimit: 20 },
        },
        drop: async () => {
          const client = await mysql.createConnection(MARIADB);
          await client.query(`DROP DATABASE IF EXISTS \`${name}\``);
          await client.end();
        },
      };
    }
  }
}

/**
 * Sets PostgreSQL session settings for every connection of `db` (node-postgres's
 * `options`, e.g. `-c standard_conforming_strings=off`), before an app connects with it.
 */
export function withPostgresSettings(db: TestDatabase, settings: string): void {
  const extra = (db.options as { extra?: Record<string, unknown> }).extra;
  db.options = { ...db.options, extra: { ...extra, options: settings } } as TestDatabase['options'];
}

/** A database several app instances can share (SQLite: a file, not memory). */
export async function sharedDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind !== 'sqlite') return createTestDatabase(kind);
  const dir = mkdtempSync(join(tmpdir(), 'audit-shared-'));
  return { kind, options: { type: 'better-sqlite3', database: join(dir, 'audit.db') }, drop: async () => rmSync(dir, { recursive: true, force: true }) };
}
