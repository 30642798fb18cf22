/**
 * What a failed write says about its cause, which decides whom it fails:
 *
 * - `connection`: the database cannot be reached or is not serving (refused, reset, timed
 *   out, terminated, too many connections, shutting down, read-only after a failover).
 *   Nothing in the rows is at fault, so every caller of a batch fails at once.
 * - `transient`: the batch lost a race with another transaction (deadlock, lock wait
 *   timeout, serialization failure, SQLite busy) and may succeed if run again.
 * - `data`: anything else, most often a row the database refuses (constraint, value too
 *   long, invalid text representation). Retrying caller by caller isolates the bad rows.
 */
export type DatabaseErrorKind = 'connection' | 'transient' | 'data';

/** Node socket errors, mysql2 protocol errors and MySQL/MariaDB server errors that mean "unavailable". */
const CONNECTION_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTCONN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
  'ER_SERVER_SHUTDOWN',
  'ER_NORMAL_SHUTDOWN',
  'ER_SHUTDOWN_COMPLETE',
  'ER_CONNECTION_KILLED',
  'ER_QUERY_INTERRUPTED',
  'ER_STATEMENT_TIMEOUT',
  'ER_NET_READ_ERROR',
  'ER_NET_READ_INTERRUPTED',
  'ER_NET_ERROR_ON_WRITE',
  'ER_NET_WRITE_INTERRUPTED',
  'ER_OUT_OF_RESOURCES',
  'ER_OUTOFMEMORY',
  'ER_CANT_CREATE_THREAD',
  'ER_HOST_IS_BLOCKED',
  'ER_ACCESS_DENIED_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_OPTION_PREVENTS_STATEMENT',
  'ER_READ_ONLY_MODE',
]);

const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  // PostgreSQL: serialization failure, deadlock, lock not available.
  '40001',
  '40P01',
  '55P03',
]);

/** SQLite result codes (better-sqlite3 reports extended ones, e.g. `SQLITE_IOERR_WRITE`). */
const SQLITE_TRANSIENT = /^SQLITE_(?:BUSY|LOCKED)/;
const SQLITE_CONNECTION = /^SQLITE_(?:CANTOPEN|IOERR|FULL|READONLY|NOTADB|CORRUPT|MISUSE)/;

/**
 * PostgreSQL SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57P
 * operator intervention (shutdown, cannot connect now), 57014 statement cancelled, 58
 * system error, 28 invalid authorization, 3D unknown database, 25006 read-only transaction.
 */
const PG_CONNECTION_STATE = /^(?:08|53|57P|57014|58|28|3D|25006)/;

/** Errors that carry no code: pg, pg-pool, mysql2, better-sqlite3 and TypeORM on a lost connection. */
const CONNECTION_MESSAGE =
  /connection terminated|connection (?:is )?(?:closed|lost|ended)|not queryable|timeout exceeded when trying to connect|pool is closed|pool after calling end|in closed state|database connection is not open|driver not connected/i;

const kindOf = (node: Record<string, unknown>): DatabaseErrorKind | undefined => {
  const code = typeof node['code'] === 'string' ? node['code'] : undefined;
  const sqlState = typeof node['sqlState'] === 'string' ? node['sqlState'] : undefined;
  if (code !== undefined) {
    if (TRANSIENT_CODES.has(code) || SQLITE_TRANSIENT.test(code)) return 'transient';
    if (CONNECTION_CODES.has(code) || SQLITE_CONNECTION.test(code)) return 'connection';
    if (/^[0-9A-Z]{5}$/.test(code) && PG_CONNECTION_STATE.test(code)) return 'connection';
  }
  // mysql2 marks errors after which the connection is unusable as fatal; 08xxx is a
  // communication error on MySQL as on PostgreSQL.
  if (node['fatal'] === true || sqlState?.startsWith('08')) return 'connection';
  if (typeof node['message'] === 'string' && CONNECTION_MESSAGE.test(node['message'])) return 'connection';
  return undefined;
};

/**
 * Classifies a failed database call by its cause (see {@link DatabaseErrorKind}). Looks
 * through TypeORM's `QueryFailedError` (`driverError`), `cause` chains and
 * `AggregateError`s (a connection refused on every address); unknown errors are `data`,
 * the kind that fails no caller but the one whose rows are refused.
 */
export function classifyDatabaseError(error: unknown): DatabaseErrorKind {
  const seen = new Set<unknown>();
  const pending: unknown[] = [error];
  while (pending.length > 0 && seen.size < 16) {
    const node = pending.shift();
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    const record = node as Record<string, unknown>;
    const kind = kindOf(record);
    if (kind) return kind;
    pending.push(record['driverError'], record['cause']);
    if (Array.isArray(record['errors'])) pending.push(...(record['errors'] as unknown[]));
  }
  return 'data';
}

/** PostgreSQL's SQLSTATE for a lock wait that ran out (`lock_timeout`). */
export const LOCK_NOT_AVAILABLE = '55P03';

/** The driver's error code of a TypeORM `QueryFailedError` (PostgreSQL's SQLSTATE, e.g. `55P03`), if any. */
export function driverErrorCode(error: unknown): string | undefined {
  const code = (error as { driverError?: { code?: unknown } } | null)?.driverError?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Tries of work that loses to another transaction (deadlock, serialization failure, lock timeout), in all. */
export const TRANSIENT_ATTEMPTS = 5;
/** The wait before the second try; doubled before each next one, and up to twice that with jitter (10–20, 20–40, 40–80, 80–160 ms). */
const TRANSIENT_BACKOFF_MS = 10;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work` (a transaction, or statements that each are one), again after a deadlock, a
 * serialization failure or a lock timeout (up to {@link TRANSIENT_ATTEMPTS} times in all,
 * a few milliseconds apart, more each time, with jitter so that transactions that lost to
 * each other do not meet again). Any other error, or the last one, is thrown.
 */
export async function retryTransient<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= TRANSIENT_ATTEMPTS || classifyDatabaseError(error) !== 'transient') throw error;
      await sleep(TRANSIENT_BACKOFF_MS * 2 ** (attempt - 1) * (1 + Math.random()));
    }
  }
}
