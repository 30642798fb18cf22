import type { DataSource, QueryRunner } from 'typeorm';
import type { TransactionEnd } from '../capture/raw-statement.js';
import { WRAPPED_QUERY } from './typeorm-after-query-wait.js';

/**
 * Patches: `query` of the query runner class a captured data source's queries go through
 * (PostgreSQL, MySQL/MariaDB, SQLite), of the TypeORM copy it comes from; what it does is
 * looked up per data source, so data sources the module does not capture are left as
 * they are.
 *
 * Why: a transaction's journal rows (and fallback events) are written in it right before
 * its COMMIT, from TypeORM's `BeforeTransactionCommit` event — which only TypeORM's
 * `commitTransaction()` sends. An app that ends the transaction some other way on its
 * query runner — a raw `COMMIT` (`runner.query('COMMIT')`), or on MySQL and MariaDB a
 * statement that commits the transaction before it runs (`TRUNCATE`, DDL, `LOCK TABLES`,
 * `START TRANSACTION`…) — committed its changes without their record, and a raw
 * `ROLLBACK` left changes that never happened waiting for a COMMIT. Such a statement is a
 * commit point (or a rollback point): `hooks.before` writes the record in the transaction
 * before it is sent (a failure fails the statement, which is then not sent), and
 * `hooks.after` hands the changes over once it has run (or says it failed).
 *
 * Only for a statement sent on a runner TypeORM says is in a transaction, and that
 * `hooks.ending` reads as ending one the module follows there: the statements TypeORM
 * sends for its own `commitTransaction()` and `rollbackTransaction()` are not (the module
 * has written the record, or dropped the changes, by then), nor are the module's own.
 *
 * Relies on: `query(query, parameters, structured)` being the method every statement of a
 * query runner goes through (TypeORM's own `startTransaction()`, `commitTransaction()`
 * and `rollbackTransaction()` call it too). Tested with TypeORM 0.3.31 and 1.1
 * (`test/unit/integrations.spec.ts` fails when a statement sent on a runner no longer goes
 * through it; `test/e2e/capture-raw-commit.e2e.spec.ts` when a raw COMMIT is not recorded).
 */
const PATCHED = Symbol.for('nestjs-system-audit:commit-points');

/** What the module does around a statement of the app's that ends the transaction open on its runner. */
export interface CommitPointHooks {
  /** How `sql`, sent by the app on `runner` (in a transaction, says TypeORM), ends a transaction the module follows there; undefined when it does not. */
  ending(runner: QueryRunner, sql: string, parameters: unknown): TransactionEnd | undefined;
  /** Before it is sent: the record is written (a failure fails the statement) or, for a rollback, the changes dropped. */
  before(runner: QueryRunner, end: TransactionEnd): Promise<void> | void;
  /** Once it has run (`ok`), or failed (with `error`). */
  after(runner: QueryRunner, end: TransactionEnd, ok: boolean, error?: unknown): void;
}

type Query = ((this: QueryRunner, query: string, parameters?: unknown[], structured?: boolean) => Promise<unknown>) & {
  [PATCHED]?: true;
  [WRAPPED_QUERY]?: unknown;
};
type Prototype = { query?: Query; [PATCHED]?: boolean };

const hooksOf = new WeakMap<DataSource, CommitPointHooks>();

/** Follows the statements that end a transaction on `dataSource`'s query runners (the class is patched once). */
export function attachCommitPoints(dataSource: DataSource, hooks: CommitPointHooks): boolean {
  const proto = runnerPrototype(dataSource);
  if (!proto || typeof proto.query !== 'function') return false;
  hooksOf.set(dataSource, hooks);
  if (proto[PATCHED]) return true;
  const original = proto.query;
  const patched: Query = function (this: QueryRunner, query, parameters, structured) {
    const hooks = this.isTransactionActive && typeof query === 'string' ? hooksOf.get(this.connection) : undefined;
    const end = hooks?.ending(this, query, parameters);
    if (!hooks || !end) return original.call(this, query, parameters, structured);
    return around(this, hooks, end, () => original.call(this, query, parameters, structured));
  };
  patched[PATCHED] = true;
  patched[WRAPPED_QUERY] = original;
  proto.query = patched;
  proto[PATCHED] = true;
  return true;
}

/** Stops following `dataSource`'s statements (the class stays patched: it does nothing for a data source without hooks). */
export function detachCommitPoints(dataSource: DataSource): void {
  hooksOf.delete(dataSource);
}

async function around(runner: QueryRunner, hooks: CommitPointHooks, end: TransactionEnd, send: () => Promise<unknown>): Promise<unknown> {
  await hooks.before(runner, end);
  let result: unknown;
  try {
    result = await send();
  } catch (error) {
    hooks.after(runner, end, false, error);
    throw error;
  }
  hooks.after(runner, end, true);
  return result;
}

/** The prototype that defines `query` for `dataSource`'s query runners. */
function runnerPrototype(dataSource: DataSource): Prototype | undefined {
  // A query runner connects only when it first runs something: making one costs nothing.
  const runner = dataSource.createQueryRunner();
  let proto = Object.getPrototypeOf(runner) as Prototype | null;
  while (proto && !Object.prototype.hasOwnProperty.call(proto, 'query')) proto = Object.getPrototypeOf(proto) as Prototype | null;
  void runner.release();
  return proto ?? undefined;
}
