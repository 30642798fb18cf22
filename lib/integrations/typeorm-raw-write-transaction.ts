import type { DataSource, QueryRunner } from 'typeorm';

/**
 * Wraps: `query` of each captured PostgreSQL, MySQL and MariaDB data source (an own
 * property of the instance, over `DataSource.prototype.query`, which `manager.query()`,
 * `repository.query()` and TypeORM 1's `dataSource.sql` call too).
 *
 * Why: a raw SQL write sent without a query runner (`dataSource.query('UPDATE …')`) runs
 * on a connection of its own, outside any transaction: the server commits it at once, and
 * its record (the journal row of its unit of work, or its fallback event outside one)
 * could only be written after it — a crash or a failed write in between left a committed
 * change without its record. Such a write now runs between a `BEGIN` and a `COMMIT` the
 * wrapper sends on that connection, and the module's transaction hooks (`hooks`) record
 * it as any transaction's change: the record is written before the `COMMIT`, and both
 * commit, or neither (`query()` fails).
 *
 * The `BEGIN` is sent as a statement, not through TypeORM's `startTransaction`: the write
 * runs at the session's own isolation level, as it would alone (not at the data source's
 * `isolationLevel`, meant for the app's transactions), and the app's subscribers see no
 * transaction events for it (one that writes raw SQL after each commit would otherwise
 * start a transaction for each of its own writes, without end).
 *
 * Only where the call names no query runner, and only where the data source's `query` is
 * TypeORM's own (its source runs the statement on a runner it creates and releases): the
 * runner is then the call's own, so no transaction the app opened on it by hand (a raw
 * `BEGIN`) can be open there. A `query` another library wrapped first (one that hands it
 * the runner of a transaction held in its own context, as transactional decorators do)
 * is left alone: its writes are recorded as before. Only for what `hooks.writes` says a
 * transaction of the module's can hold (plain DML writing tables whose changes are
 * recorded): reads, the module's own statements, writes of tables it does not record,
 * scripts with their own `BEGIN … COMMIT` run as they are. Not on SQLite, whose drivers
 * run every query on one connection: a transaction there would take in what the app's
 * other requests run meanwhile.
 *
 * Relies on: `query(query, parameters, queryRunner)` running on a query runner it creates
 * (and releases) when none is given. Tested with TypeORM 0.3.31 and 1.1
 * (`test/unit/integrations.spec.ts` fails when `query`'s source no longer reads as
 * creating its own runner, or when a wrapped write no longer runs in a transaction).
 */
const WRAPPED = Symbol.for('nestjs-system-audit:raw-write-transaction');
/** On a query runner while the wrapper's transaction is open on it. */
const OPEN = Symbol.for('nestjs-system-audit:raw-write-transaction:open');

/**
 * Whether `runner` holds a transaction the wrapper opened (`isTransactionActive` is set by
 * hand there, TypeORM's own bookkeeping is not): a level inside it is a `SAVEPOINT` sent
 * as a statement, never TypeORM's `transaction()`, which would send a second `BEGIN`.
 */
export function inRawWriteTransaction(runner: QueryRunner | undefined): boolean {
  return (runner as { [OPEN]?: boolean } | undefined)?.[OPEN] === true;
}

/** The statement that opens the transaction, by driver: where none is named, nothing is wrapped. */
const BEGIN: Readonly<Record<string, string>> = { postgres: 'BEGIN', mysql: 'START TRANSACTION', mariadb: 'START TRANSACTION', 'aurora-mysql': 'START TRANSACTION' };

type Query = (this: DataSource, query: string, parameters?: unknown[], queryRunner?: QueryRunner) => Promise<unknown>;
type Wrapped = Query & { [WRAPPED]?: Query };

/** What the module does around a wrapped write: the hooks its TypeORM subscriber runs around a transaction. */
export interface RawWriteTransactionHooks {
  /** Whether raw SQL `sql` (with `parameters`) is a write to run in a transaction of the module's. */
  writes(sql: string, parameters: unknown): boolean | Promise<boolean>;
  /** The transaction has begun on `runner`. */
  started(runner: QueryRunner): void;
  /** Its COMMIT comes next: the record is written (a failure fails the COMMIT). */
  beforeCommit(runner: QueryRunner): Promise<void> | void;
  /** It has committed. */
  committed(runner: QueryRunner): void;
  /** It is rolled back (the write or the COMMIT failed). */
  rollingBack(runner: QueryRunner): void;
}

/** TypeORM's own `query`: the runner it is given, or one it creates (and releases). */
const OWN_RUNNER = /(?:\?\?|\|\|)\s*this\.createQueryRunner\(\)/;

/** Whether `query` is TypeORM's `DataSource.prototype.query`, as its source says (see {@link OWN_RUNNER}). */
export function isTypeormQuery(query: unknown): boolean {
  if (typeof query !== 'function') return false;
  const source = Function.prototype.toString.call(query);
  return OWN_RUNNER.test(source) && source.includes('.release()');
}

/**
 * Runs recorded raw writes sent without a query runner on `dataSource` in a transaction of
 * their own (once per data source). Returns whether its `query` is wrapped: not on SQLite
 * (or a database the module does not know), nor when its `query` is not TypeORM's own.
 */
export function attachRawWriteTransaction(dataSource: DataSource, hooks: RawWriteTransactionHooks): boolean {
  const current = dataSource.query as Wrapped;
  if (current[WRAPPED]) return true;
  const begin = BEGIN[String(dataSource.driver.options.type)];
  if (!begin || !isTypeormQuery(current)) return false;
  const original = current;
  const wrapped: Wrapped = async function (this: DataSource, query, parameters, queryRunner) {
    if (queryRunner || typeof query !== 'string') return original.call(this, query, parameters, queryRunner);
    const writes = hooks.writes(query, parameters);
    if (writes === false || (writes !== true && !(await writes))) return original.call(this, query, parameters, queryRunner);
    const runner = this.createQueryRunner();
    const active = runner as { isTransactionActive: boolean; [OPEN]?: boolean };
    try {
      await runner.query(begin);
      active.isTransactionActive = true;
      active[OPEN] = true;
      hooks.started(runner);
      let result: unknown;
      try {
        result = await original.call(this, query, parameters, runner);
        await hooks.beforeCommit(runner);
        await runner.query('COMMIT');
      } catch (error) {
        hooks.rollingBack(runner);
        active.isTransactionActive = false;
        await runner.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
      active.isTransactionActive = false;
      hooks.committed(runner);
      return result;
    } finally {
      active.isTransactionActive = false;
      active[OPEN] = false;
      await runner.release();
    }
  };
  wrapped[WRAPPED] = original;
  Object.defineProperty(dataSource, 'query', { value: wrapped, configurable: true, writable: true });
  return true;
}

/** Undoes {@link attachRawWriteTransaction} on `dataSource` (when its `query` is still the wrapper). */
export function detachRawWriteTransaction(dataSource: DataSource): void {
  const current = dataSource.query as Wrapped;
  if (!current[WRAPPED]) return;
  delete (dataSource as { query?: unknown }).query;
  // Someone else's own property was under it: put it back.
  if (dataSource.query !== current[WRAPPED]) Object.defineProperty(dataSource, 'query', { value: current[WRAPPED], configurable: true, writable: true });
}
