import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Where the benchmarks run: the `test` database of the local server unless PG* variables say otherwise. */
export const POSTGRES = {
  host: process.env['PGHOST'] ?? '127.0.0.1',
  port: Number(process.env['PGPORT'] ?? 5432),
  user: process.env['PGUSER'] ?? 'postgres',
  password: process.env['PGPASSWORD'] ?? '',
  database: process.env['PGDATABASE'] ?? 'test',
};

/** TypeORM connection options for the benchmark database, in `schema`. */
export const postgresConnection = (schema: string) =>
  ({
    type: 'postgres',
    host: POSTGRES.host,
    port: POSTGRES.port,
    username: POSTGRES.user,
    password: POSTGRES.password,
    database: POSTGRES.database,
    schema,
  }) as const;

/** A schema of the benchmark's own in the `test` database, dropped afterwards. */
export interface BenchSchema {
  name: string;
  /** `"schema"."table"`, for SQL run outside TypeORM. */
  table(name: string): string;
  /** One query on a short-lived connection of its own. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...POSTGRES, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty, uniquely named schema, e.g. `bench_http_3fa9c1d2e4`. */
export async function createBenchSchema(purpose: string): Promise<BenchSchema> {
  const name = `bench_${purpose}_${randomBytes(5).toString('hex')}`;
  await withClient((client) => client.query(`CREATE SCHEMA "${name}"`));
  return {
    name,
    table: (table) => `"${name}"."${table}"`,
    query: (sql, values) => withClient(async (client) => (await client.query(sql, values)).rows),
    drop: () => withClient(async (client) => void (await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`))),
  };
}

/** `PostgreSQL 15.20`, from the server's `server_version`. */
export async function postgresVersion(): Promise<string> {
  const rows = await withClient(async (client) => (await client.query<{ server_version: string }>('SHOW server_version')).rows);
  return `PostgreSQL ${rows[0]?.server_version ?? 'unknown'}`;
}

/**
 * A `count(*)` query's result once it stops changing (polled every 250 ms, up to 10 s):
 * requests cut off when a load run stops may still be finishing on the server.
 */
export async function settledCount(schema: BenchSchema, sql: string): Promise<number> {
  let last = -1;
  for (let attempt = 0; attempt < 40; attempt++) {
    const rows = await schema.query<{ n: string }>(sql);
    const count = Number(rows[0]?.n ?? 0);
    if (count === last) return count;
    last = count;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return last;
}
