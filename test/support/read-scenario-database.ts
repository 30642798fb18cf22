import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { MARIADB, POSTGRES } from './database-probe.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './test-database.js';

/**
 * A database of one's own for the read-side scenarios, named `audit_rds_…` (a PostgreSQL
 * schema, a MariaDB database, or SQLite in memory / in `sqliteFile`), with the command
 * line's `--url` arguments to reach it.
 */
export async function rdsDatabase(kind: DatabaseKind, sqliteFile?: string): Promise<{ db: TestDatabase; url: string[] }> {
  const name = `audit_rds_${randomBytes(5).toString('hex')}`;
  if (kind === 'sqlite') {
    if (!sqliteFile) return { db: await createTestDatabase('sqlite'), url: [] };
    return { db: { kind, options: { type: 'better-sqlite3', database: sqliteFile }, drop: async () => undefined }, url: ['--url', `sqlite:${sqliteFile}`] };
  }
  if (kind === 'postgres') {
    const admin = new pg.Client(POSTGRES);
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${name}"`);
    await admin.end();
    return {
      db: {
        kind,
        options: { type: 'postgres', host: POSTGRES.host, port: POSTGRES.port, username: POSTGRES.user, password: POSTGRES.password, database: POSTGRES.database, schema: name, extra: { max: 20 } },
        drop: async () => {
          const client = new pg.Client(POSTGRES);
          await client.connect();
          await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
          await client.end();
        },
      },
      url: ['--url', `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`, '--schema', name],
    };
  }
  const admin = await mysql.createConnection(MARIADB);
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.end();
  return {
    db: {
      kind,
      options: { type: 'mariadb', host: MARIADB.host, port: MARIADB.port, username: MARIADB.user, password: MARIADB.password, database: name, extra: { connectionLimit: 20 } },
      drop: async () => {
        const client = await mysql.createConnection(MARIADB);
        await client.query(`DROP DATABASE IF EXISTS \`${name}\``);
        await client.end();
      },
    },
    url: ['--url', `mariadb://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${name}`],
  };
}
