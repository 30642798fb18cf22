import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource, type QueryRunner } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditMigrations } from '../../lib/index.js';
import { classifyDatabaseError, driverErrorCode } from '../../lib/storage/database-errors.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** A port on 127.0.0.1 nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The error `promise` rejects with (fails the test when it resolves). */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure, got none');
}

const servers = databases().filter((kind) => kind !== 'sqlite');

describe.each(servers)('classifyDatabaseError on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const proxy = new TcpProxy('127.0.0.1', kind === 'postgres' ? 5432 : 3306);
  let table: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // In the suite's own schema or database, dropped with it.
    table = kind === 'postgres' ? `"${(db.options as { schema: string }).schema}"."lock_probe"` : '`lock_probe`';
    await proxy.start();
    dataSource = new DataSource({
      ...db.options,
      entities: [...AuditEntities],
      migrations: [...AuditMigrations],
      migrationsRun: true,
    } as never);
    await dataSource.initialize();
    await dataSource.query(`CREATE TABLE ${table} (id int PRIMARY KEY, n int)`);
    await dataSource.query(`INSERT INTO ${table} (id, n) VALUES (1, 0), (2, 0)`);
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await proxy.stop();
    await db?.drop();
  });

  it("driverErrorCode() reads the driver's code of a failed query, and nothing from other errors", async () => {
    const failed = await dataSource.query('SELECT * FROM no_such_table_here').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(driverErrorCode(failed)).toBe(kind === 'postgres' ? '42P01' : 'ER_NO_SUCH_TABLE');
    expect(driverErrorCode(new Error('plain'))).toBeUndefined();
    expect(driverErrorCode(null)).toBeUndefined();
    expect(driverErrorCode({ driverError: { code: 1146 } })).toBeUndefined();
  });

  it('a refused connection (closed port) is a connection error', async () => {
    const port = await closedPort();
    const probe = new DataSource({ ...db.options, host: '127.0.0.1', port } as never);
    const error = await failure(probe.initialize());
    expect(String((error as Error).message)).toMatch(/ECONNREFUSED|connect/i);
    expect(classifyDatabaseError(error)).toBe('connection');
  });

  it('a connection cut under a pooled client is a connection error', async () => {
    proxy.restore();
    const probe = new DataSource({ ...db.options, host: '127.0.0.1', port: proxy.port } as never);
    await probe.initialize();
    try {
      await probe.query('SELECT 1');
      proxy.cut();
      const error = await failure(probe.query('SELECT 1'));
      expect(classifyDatabaseError(error)).toBe('connection');
    } finally {
      proxy.restore();
      await probe.destroy().catch(() => undefined);
    }
  });

  it('a value too long for its column is a data error', async () => {
    const error = await failure(
      dataSource
        .createQueryBuilder()
        .insert()
        .into('audit_log')
        .values({
          id: randomUUID(),
          occurredAt: new Date(),
          action: 'x'.repeat(300),
          outcome: 'success',
          kind: 'intent',
          actorType: 'system',
          source: 'test',
        })
        .execute(),
    );
    expect((error as Error).message).toMatch(/too long/i);
    expect(classifyDatabaseError(error)).toBe('data');
  });

  it('a deadlock is transient', async () => {
    const first = dataSource.createQueryRunner();
    const second = dataSource.createQueryRunner();
    try {
      await first.startTransaction();
      await second.startTransaction();
      await first.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`);
      await second.query(`UPDATE ${table} SET n = n + 1 WHERE id = 2`);
      const crossed = [
        first.query(`UPDATE ${table} SET n = n + 1 WHERE id = 2`),
        second.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`),
      ].map((query) => query.then(() => undefined, (error: unknown) => error));
      // The database picks one to fail; the other waits until the loser rolls back.
      const loser = await Promise.race([
        ...crossed.map((result, index) => result.then((error) => (error ? index : new Promise<never>(() => undefined)))),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no deadlock within 10 s')), 10_000)),
      ]);
      const error = await crossed[loser];
      await (loser === 0 ? first : second).rollbackTransaction();
      expect(await crossed[1 - loser]).toBeUndefined();
      expect((error as Error).message).toMatch(/deadlock/i);
      expect(classifyDatabaseError(error)).toBe('transient');
    } finally {
      await first.rollbackTransaction().catch(() => undefined);
      await second.rollbackTransaction().catch(() => undefined);
      await first.release();
      await second.release();
    }
  });

  it('a lock that is not available at once is transient', async () => {
    const holder = dataSource.createQueryRunner();
    const waiter = dataSource.createQueryRunner();
    try {
      await holder.startTransaction();
      await holder.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`);
      await waiter.startTransaction();
      const error = await failure(
        kind === 'postgres'
          ? waiter.query(`SELECT * FROM ${table} WHERE id = 1 FOR UPDATE NOWAIT`)
          : lockWaitTimeout(waiter, table),
      );
      expect(classifyDatabaseError(error)).toBe('transient');
    } finally {
      await holder.rollbackTransaction().catch(() => undefined);
      await waiter.rollbackTransaction().catch(() => undefined);
      await holder.release();
      await waiter.release();
    }
  });

  it.runIf(kind === 'postgres')('a backend terminated by an administrator (SQLSTATE 57P01) is a connection error', async () => {
    const runner = dataSource.createQueryRunner();
    try {
      const error = await failure(runner.query('SELECT pg_terminate_backend(pg_backend_pid())'));
      expect((error as { code?: string }).code).toBe('57P01');
      expect(classifyDatabaseError(error)).toBe('connection');
    } finally {
      await runner.release().catch(() => undefined);
    }
  });
});

async function lockWaitTimeout(runner: QueryRunner, table: string): Promise<unknown> {
  await runner.query('SET SESSION innodb_lock_wait_timeout = 1');
  return runner.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`);
}

describe('classifyDatabaseError on sqlite', () => {
  it('a NOT NULL violation is a data error', async () => {
    const dataSource = new DataSource({
      type: 'better-sqlite3',
      database: ':memory:',
      entities: [...AuditEntities],
      migrations: [...AuditMigrations],
      migrationsRun: true,
    });
    await dataSource.initialize();
    try {
      const error = await failure(
        dataSource.query('INSERT INTO audit_log (id, occurred_at, action, outcome, kind, actor_type, source) VALUES (?, ?, NULL, ?, ?, ?, ?)', [
          randomUUID(),
          new Date().toISOString(),
          'success',
          'intent',
          'system',
          'test',
        ]),
      );
      expect((error as Error).message).toMatch(/NOT NULL/);
      expect(classifyDatabaseError(error)).toBe('data');
    } finally {
      await dataSource.destroy();
    }
  });

  it('a database another connection holds for writing (SQLITE_BUSY) is transient', async () => {
    const file = join(tmpdir(), `audit-busy-${randomUUID()}.sqlite`);
    const holder = new DataSource({ type: 'better-sqlite3', database: file });
    const other = new DataSource({ type: 'better-sqlite3', database: file, timeout: 0 });
    await holder.initialize();
    await other.initialize();
    try {
      await holder.query('CREATE TABLE t (n int)');
      await holder.query('BEGIN IMMEDIATE');
      await holder.query('INSERT INTO t VALUES (1)');
      const error = await failure(other.query('INSERT INTO t VALUES (2)'));
      expect((error as { code?: string }).code).toBe('SQLITE_BUSY');
      expect(classifyDatabaseError(error)).toBe('transient');
    } finally {
      await holder.query('ROLLBACK');
      await holder.destroy();
      await other.destroy();
      await rm(file, { force: true });
    }
  });
});
