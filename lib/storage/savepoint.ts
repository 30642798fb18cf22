import { ownStatement } from '../capture/own-statements.js';

/** What a savepoint's statements are sent through: the query runner or entity manager of the transaction. */
interface SavepointQueries {
  query(query: string, parameters?: unknown[]): Promise<unknown>;
}

/**
 * The transaction a savepoint was in is gone (rolled back by the server, as an InnoDB
 * deadlock does): the savepoint could not be rolled back to, nothing of the transaction can
 * be kept. `cause` is the error of the work done in the savepoint.
 */
export class TransactionLost extends Error {
  constructor(override readonly cause: unknown) {
    super('the transaction was rolled back');
  }
}

/**
 * Runs `work` in a savepoint `name` of the transaction `on` holds, sent as statements (the
 * module's own, which capture passes over). When `work` fails, the savepoint is rolled back
 * to and released (rolled back to, a savepoint stays open: none is left behind), and its
 * error thrown: the transaction goes on. When even that fails, the server has rolled the
 * whole transaction back: {@link TransactionLost}, which the caller does not outlive.
 */
export async function inSavepoint<T>(on: SavepointQueries, name: string, work: () => Promise<T>): Promise<T> {
  await on.query(`SAVEPOINT ${name}`, ownStatement([]));
  let result: T;
  try {
    result = await work();
  } catch (error) {
    try {
      await on.query(`ROLLBACK TO SAVEPOINT ${name}`, ownStatement([]));
      await on.query(`RELEASE SAVEPOINT ${name}`, ownStatement([]));
    } catch {
      throw new TransactionLost(error);
    }
    throw error;
  }
  await on.query(`RELEASE SAVEPOINT ${name}`, ownStatement([]));
  return result;
}
