import mysql from 'mysql2/promise';
import pg from 'pg';

export type DatabaseKind = 'sqlite' | 'postgres' | 'mariadb';

export const POSTGRES = {
  host: process.env['PGHOST'] ?? '127.0.0.1',
  port: Number(process.env['PGPORT'] ?? 5432),
  user: process.env['PGUSER'] ?? 'postgres',
  password: process.env['PGPASSWORD'] ?? '',
  database: process.env['PGDATABASE'] ?? 'test',
};

export const MARIADB = {
  host: process.env['MYSQL_HOST'] ?? '127.0.0.1',
  port: Number(process.env['MYSQL_PORT'] ?? 3306),
  user: process.env['MYSQL_USER'] ?? 'root',
  password: process.env['MYSQL_PASSWORD'] ?? '',
  database: process.env['MYSQL_DATABASE'] ?? 'test',
};

async function probePostgres(): Promise<void> {
  const client = new pg.Client({ ...POSTGRES, connectionTimeoutMillis: 3000 });
  await client.connect();
  await client.end();
}

async function probeMariadb(): Promise<void> {
  const connection = await mysql.createConnection({ ...MARIADB, connectTimeout: 3000 });
  await connection.end();
}

export async function probeDatabases(): Promise<{
  available: DatabaseKind[];
  missing: Array<{ kind: DatabaseKind; error: string }>;
}> {
  const probes: Array<[DatabaseKind, () => Promise<void>]> = [
    ['postgres', probePostgres],
    ['mariadb', probeMariadb],
  ];
  const available: DatabaseKind[] = [];
  const missing: Array<{ kind: DatabaseKind; error: string }> = [];
  for (const [kind, probe] of probes) {
    try {
      await probe();
      available.push(kind);
    } catch (error) {
      missing.push({ kind, error: (error as Error).message || String(error) });
    }
  }
  return { available, missing };
}
