import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { heldElsewhere, inOwnTurn } from '../capture/runner-turn.js';
import { isSqlite } from './drivers.js';

/** SQLite: a manager of the module's own, without a query runner, per data source. */
const sqliteManagers = new WeakMap<DataSource, EntityManager>();

/**
 * Runs `work` with an entity manager on a query runner of its own, made for it and
 * released after: where the module stores what must not share the fate of the app's
 * transactions (the writer's events, a journal row of a write made outside any transaction).
 *
 * Not `dataSource.manager` or `dataSource.query()`: transactional libraries replace them
 * on the data source (typeorm-transactional's `addTransactionalDataSource()`) so that, in
 * code a `@Transactional()` method runs, they hand out that transaction's manager and
 * query runner. Work the module does there (an `@Audited` job that ends inside the
 * method, events it stores meanwhile) would be written in the app's transaction and lost
 * when that rolls back. A manager on a runner of its own passes the runner to each
 * statement it sends, so the libraries leave it alone. Only its `query()` and
 * `transaction()` are meant to be used: a repository taken from it is still redirected
 * (typeorm-transactional replaces `Repository.prototype.manager`).
 *
 * On SQLite, TypeORM has one query runner for every caller, in whatever transaction is
 * open on it: there the manager is one without a runner, as the data source's own was
 * before any library replaced it (`transaction()` opens a savepoint in an open
 * transaction, as it always did there).
 */
export async function onOwnRunner<T>(dataSource: DataSource, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  if (isSqlite(dataSource)) {
    let manager = sqliteManagers.get(dataSource);
    if (!manager) sqliteManagers.set(dataSource, (manager = dataSource.createEntityManager()));
    return work(manager);
  }
  // A runner connects when it first sends a statement: made and released, it costs nothing.
  const runner = dataSource.createQueryRunner();
  try {
    return await work(runner.manager);
  } finally {
    await runner.release();
  }
}

/**
 * Whether `runner` holds a pooled connection of `dataSource` outside any transaction (the
 * connection a write outside a transaction was just made on, which the app's code still
 * holds while it waits for the module): work the module does for that write is done on it.
 * Taking another connection from the pool meanwhile could wait forever when every
 * connection is held so (a pool as large as the number of such writes at once). SQLite has
 * one connection, no pool.
 */
export function holdsConnection(runner: QueryRunner | undefined, dataSource: DataSource): runner is QueryRunner {
  return runner !== undefined && runner.connection === dataSource && !isSqlite(dataSource) && !runner.isReleased && !runner.isTransactionActive;
}

/**
 * Runs `work` with `runner`'s manager when `runner` {@link holdsConnection holds a
 * connection} of `dataSource` outside any transaction, else without one (undefined). On
 * `runner`, `work` runs in a turn of its own (see runner-turn): once a write holding the
 * runner's turn has ended its transaction (a record written in it would be that
 * transaction's, and one written on another connection would wait for the pool the app's
 * held runners may fill), and while it runs the next write's transaction waits.
 */
export function onHeldRunner<T>(runner: QueryRunner | undefined, dataSource: DataSource, work: (manager: EntityManager | undefined) => Promise<T>): Promise<T> {
  if (!holdsConnectionOrTurn(runner, dataSource)) return work(undefined);
  return inOwnTurn(
    runner,
    () => holdsConnection(runner, dataSource),
    (inTurn) => work(inTurn ? runner.manager : undefined),
  );
}

/** {@link onOwnRunner}, or on `runner` when it {@link holdsConnection holds a connection} of `dataSource` outside any transaction (see {@link onHeldRunner}). */
export function onHeldOrOwnRunner<T>(runner: QueryRunner | undefined, dataSource: DataSource, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  return onHeldRunner(runner, dataSource, (manager) => (manager ? work(manager) : onOwnRunner(dataSource, work)));
}

/** Whether `runner` holds a connection of `dataSource` outside any transaction now, or may once the transaction a write opened on it in its turn has ended. */
function holdsConnectionOrTurn(runner: QueryRunner | undefined, dataSource: DataSource): runner is QueryRunner {
  return holdsConnection(runner, dataSource) || (heldElsewhere(runner) && runner!.connection === dataSource && !runner!.isReleased);
}
