import { createHash } from 'node:crypto';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { ownStatement } from '../capture/own-statements.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { driverErrorCode, LOCK_NOT_AVAILABLE } from '../storage/database-errors.js';
import { MYSQL_DRIVERS, SQLITE_DRIVERS } from '../storage/drivers.js';

/** How the integrator holds its role while it sequences a batch. */
export type IntegratorDialect = 'postgres' | 'mysql' | 'sqlite';


export function integratorDialect(dataSource: DataSource): IntegratorDialect {
  const type = String(dataSource.options.type);
  if (type === 'postgres' || type === 'cockroachdb' || type === 'aurora-postgres') return 'postgres';
  if (MYSQL_DRIVERS.has(type)) return 'mysql';
  if (SQLITE_DRIVERS.has(type)) return 'sqlite';
  throw new Error(`Audit integrity: the ${type} driver is not supported (PostgreSQL, MySQL/MariaDB and SQLite are)`);
}

/** The identity of the log the lock guards: the database and the audit table (schema-qualified). */
function lockIdentity(dataSource: DataSource): string {
  const database = String((dataSource.driver as { database?: string }).database ?? dataSource.options.database ?? '');
  return `${database}.${dataSource.getMetadata(AuditLogEntity).tablePath}`;
}

/** PostgreSQL advisory lock key: 64 bits of SHA-256 of the log's identity, as a signed bigint. */
export function advisoryLockKey(dataSource: DataSource): string {
  return createHash('sha256').update(`nestjs-system-audit:${lockIdentity(dataSource)}`).digest().readBigInt64BE(0).toString();
}

/** MySQL/MariaDB `GET_LOCK` name (server-wide, at most 64 characters): names the database and table. */
export function namedLockName(dataSource: DataSource): string {
  const name = `nestjs-system-audit:${lockIdentity(dataSource)}`;
  if (name.length <= 64) return name;
  return `nestjs-system-audit:${createHash('sha256').update(name).digest('hex').slice(0, 43)}`;
}

/** How long a timed pass's batch waits for a row another transaction holds, at most. */
export const TIMED_BATCH_LOCK_WAIT_MS = 5_000;

/**
 * Runs `work` in a transaction while holding the integrator's lock: a PostgreSQL
 * transaction-level advisory lock, or a MySQL/MariaDB named lock (`GET_LOCK`, released
 * after the commit). The lock dies with the connection, so another instance takes over
 * as soon as a holder's process is gone. Returns `busy` when another instance holds it
 * (after `waitMs`, 0: do not wait).
 *
 * Inside the batch, a row that another transaction holds is waited for what is left of
 * `waitMs` at most (a timed pass, `waitMs` 0: {@link TIMED_BATCH_LOCK_WAIT_MS}; MySQL and
 * MariaDB count whole seconds, at least one); past it the statement
 * fails with the database's lock timeout, which is not `busy`: nobody held the
 * integrator's lock.
 */
export async function withIntegratorLock<T>(
  dataSource: DataSource,
  waitMs: number,
  work: (manager: EntityManager, runner: QueryRunner) => Promise<T>,
): Promise<{ busy: true } | { busy: false; value: T }> {
  const dialect = integratorDialect(dataSource);
  if (dialect === 'sqlite') throw new Error('withIntegratorLock: SQLite takes its writer lock instead');
  const started = Date.now();
  /** What is left of `waitMs` once the integrator's lock is held (at least 1 ms), or the timed pass's bound. */
  const rowWaitMs = (): number => Math.ceil(waitMs > 0 ? Math.max(1, waitMs - (Date.now() - started)) : TIMED_BATCH_LOCK_WAIT_MS);
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  let named = false;
  /** MySQL/MariaDB: the session's own row-lock wait, put back before the connection goes back to the pool. */
  let sessionLockWait: number | string | undefined;
  try {
    if (dialect === 'mysql') {
      const name = namedLockName(dataSource);
      const [row] = (await runner.query('SELECT GET_LOCK(?, ?) AS locked', ownStatement([name, Math.ceil(waitMs / 1000)]))) as Array<{ locked: number | string | null }>;
      if (Number(row?.locked) !== 1) return { busy: true };
      named = true;
      const [wait] = (await runner.query('SELECT @@SESSION.innodb_lock_wait_timeout AS seconds')) as Array<{ seconds: number | string }>;
      sessionLockWait = wait?.seconds;
      await runner.query('SET SESSION innodb_lock_wait_timeout = ?', ownStatement([Math.max(1, Math.ceil(rowWaitMs() / 1000))]));
    }
    await runner.startTransaction();
    try {
      if (dialect === 'postgres') {
        const key = advisoryLockKey(dataSource);
        if (waitMs > 0) {
          await runner.query(`SET LOCAL lock_timeout = ${Math.ceil(waitMs)}`);
          try {
            await runner.query('SELECT pg_advisory_xact_lock($1)', ownStatement([key]));
          } catch (error) {
            if (driverErrorCode(error) !== LOCK_NOT_AVAILABLE && !/lock timeout/i.test((error as Error).message)) throw error;
            await runner.rollbackTransaction();
            return { busy: true };
          }
        } else {
          const [row] = (await runner.query('SELECT pg_try_advisory_xact_lock($1) AS locked', ownStatement([key]))) as Array<{ locked: boolean }>;
          if (!row?.locked) {
            await runner.rollbackTransaction();
            return { busy: true };
          }
        }
        await runner.query(`SET LOCAL lock_timeout = ${rowWaitMs()}`);
      }
      const value = await work(runner.manager, runner);
      await runner.commitTransaction();
      return { busy: false, value };
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      throw error;
    }
  } finally {
    if (sessionLockWait !== undefined) await runner.query('SET SESSION innodb_lock_wait_timeout = ?', ownStatement([Number(sessionLockWait)])).catch(() => undefined);
    if (named) await runner.query('SELECT RELEASE_LOCK(?)', ownStatement([namedLockName(dataSource)])).catch(() => undefined);
    await runner.release();
  }
}
