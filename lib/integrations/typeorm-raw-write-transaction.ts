import type { DataSource, QueryRunner } from 'typeorm';

/**
 * Wraps: `query` of each captured data source (an own property of the instance, over
 * `DataSource.prototype.query`, which `manager.query()`, `repository.query()` and
 * TypeORM 1's `dataSource.sql` call too).
 *
 * Why: a raw SQL write sent without a query runner (`dataSource.query('UPDATE …')`) runs
 * on a connection of its own, outside any transaction: the server commits it at once, and
 * its record (the journal row of its unit of work, or its fallback event outside one)
 * could only be written after it — a crash or a failed write in between left a committed
 * change without its record. Such a write now runs in a transaction of its own, whose
 * COMMIT carries the record as any transaction's does: both commit, or neither.
 *
 * Only where the call names no query runner, and only where the data source's `query` is
 * TypeORM's own (its source runs the statement on a runner it creates and releases): the
 * runner is then the call's own, so no transaction the app opened on it by hand (a raw
 * `BEGIN`) can be open there. A `query` another library wrapped first (one that hands it
 * the runner of a transaction held in its own context, as transactional decorators do)
 * is left alone: its writes are recorded as before. Only for
 * statements that write a table whose changes are recorded (`writes`): reads, the module's
 * own statements and writes of tables it does not record run as they are. SQLite runs
 * every query on one connection: when a transaction is open there already, the write
 * joins it, as before.
 *
 * Relies on: `query(query, parameters, queryRunner)` running on a query runner it creates
 * (and releases) when none is given, and `transaction(work)`. Tested with TypeORM 0.3.31
 * and 1.1 (`test/unit/integrations.spec.ts` fails when `query`'s source no longer reads as
 * creating its own runner, or when a wrapped write no longer runs in a transaction).
 */
const WRAPPED = Symbol.for('nestjs-system-audit:raw-write-transaction');

type Query = (this: DataSource, query: string, parameters?: unknown[], queryRunner?: QueryRunner) => Promise<unknown>;
type Wrapped = Query & { [WRAPPED]?: Query };

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
 * their own (once per data source). Returns whether its `query` is wrapped: not when it is
 * not TypeORM's own.
 */
export function attachRawWriteTransaction(dataSource: DataSource, writes: (sql: string, parameters: unknown) => boolean): boolean {
  const current = dataSource.query as Wrapped;
  if (current[WRAPPED]) return true;
  if (!isTypeormQuery(current)) return false;
  const original = current;
  const wrapped: Wrapped = function (this: DataSource, query, parameters, queryRunner) {
    // SQLite's drivers keep their one connection's query runner as `driver.queryRunner`.
    const shared = (this.driver as { queryRunner?: QueryRunner }).queryRunner;
    if (queryRunner || typeof query !== 'string' || shared?.isTransactionActive || !writes(query, parameters)) {
      return original.call(this, query, parameters, queryRunner);
    }
    return this.transaction((manager) => original.call(this, query, parameters, manager.queryRunner));
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
