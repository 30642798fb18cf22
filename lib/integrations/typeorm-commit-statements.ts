import type { DataSource, QueryRunner } from 'typeorm';
import { ownStatement } from '../capture/own-statements.js';
import { WRAPPED_QUERY } from './typeorm-after-query-wait.js';

/**
 * Patches: `query` of TypeORM's PostgreSQL query runner class (`PostgresQueryRunner`), of
 * the TypeORM copy a data source comes from, for data sources of type `postgres` only.
 *
 * Why: a transaction's journal rows are written in it, right before its COMMIT, so that
 * no change commits without its record. As a statement of its own, that INSERT costs one
 * more round trip to the server for every audited transaction — on a busy API, the
 * largest part of what the module costs a request. PostgreSQL runs the statements of one
 * simple-protocol message in order and stops at the first that fails, so the INSERT can
 * travel in the COMMIT's message (`INSERT …; COMMIT`): if it fails, COMMIT is never run,
 * the transaction is not committed, and TypeORM rolls it back as after any failed COMMIT.
 * {@link sendWithCommit} hands a statement to the runner's next `COMMIT`; the patched
 * `query` sends it in that message.
 *
 * Relies on: `PostgresQueryRunner.prototype.commitTransaction` broadcasting
 * `BeforeTransactionCommit` (when the journal rows are made) and then calling
 * `this.query("COMMIT")` for the outermost transaction. This is checked, from the
 * method's source, when the patch is installed: when it does not hold, nothing is patched
 * and the journal rows go as statements of their own (as on other databases). Tested
 * with TypeORM 0.3.20+ and 1.1 (`test/unit/integrations.spec.ts` fails when the check
 * stops passing or the statements no longer ride on the COMMIT).
 */
const PATCHED = Symbol.for('nestjs-system-audit:commit-statements');
/** Statements waiting, on a query runner, for its next COMMIT. */
const PENDING = Symbol.for('nestjs-system-audit:commit-statements:pending');

type Query = ((this: QueryRunner, query: string, parameters?: unknown[], structured?: boolean) => Promise<unknown>) & {
  [PATCHED]?: true;
  [WRAPPED_QUERY]?: unknown;
};
type Prototype = { query?: Query; commitTransaction?: (...args: unknown[]) => unknown; [PATCHED]?: boolean };
type Pending = QueryRunner & { [PENDING]?: string[] };

/** `this.query("COMMIT")` after the `BeforeTransactionCommit` broadcast, in the method's source. */
const COMMIT_AFTER_BROADCAST = /BeforeTransactionCommit[\s\S]*this\.query\(\s*["'`]COMMIT["'`]\s*\)/;

/**
 * Installs the patch on the PostgreSQL query runner class of `dataSource`'s TypeORM copy
 * (once per class). Returns whether that class's COMMITs now carry the statements given to
 * {@link sendWithCommit}: false for other databases, or when TypeORM's commit is not the
 * one the patch relies on.
 */
export function attachCommitStatements(dataSource: DataSource): boolean {
  if (dataSource.driver.options.type !== 'postgres') return false;
  const proto = runnerPrototype(dataSource);
  if (!proto) return false;
  if (proto[PATCHED] !== undefined) return proto[PATCHED];
  const original = proto.query;
  const commit = proto.commitTransaction;
  const fits = typeof original === 'function' && typeof commit === 'function' && COMMIT_AFTER_BROADCAST.test(Function.prototype.toString.call(commit));
  proto[PATCHED] = fits;
  if (!fits) return false;
  const patched: Query = function (this: Pending, query, parameters, structured) {
    const pending = this[PENDING];
    if (pending !== undefined && query === 'COMMIT') {
      this[PENDING] = undefined;
      // No parameters: the simple protocol, which takes several statements in one message.
      return original!.call(this, `${pending.join(';\n')};\nCOMMIT`, ownStatement([]), structured);
    }
    return original!.call(this, query, parameters, structured);
  };
  patched[PATCHED] = true;
  patched[WRAPPED_QUERY] = original;
  proto.query = patched;
  return true;
}

/** Whether `runner`'s COMMIT carries statements given to {@link sendWithCommit}. */
export function commitCarriesStatements(runner: QueryRunner): boolean {
  const proto = Object.getPrototypeOf(runner) as Prototype | null;
  return proto?.[PATCHED] === true && runner.isTransactionActive;
}

/**
 * Sends `sql` (a statement without parameters: values inlined as literals) in the same
 * message as `runner`'s next COMMIT, before it. Only when {@link commitCarriesStatements}.
 */
export function sendWithCommit(runner: QueryRunner, sql: string): void {
  const pending = runner as Pending;
  (pending[PENDING] ??= []).push(sql);
}

/** The statements still waiting for `runner`'s COMMIT (none once it was sent), removed from it. */
export function takeUnsent(runner: QueryRunner): string[] | undefined {
  const pending = runner as Pending;
  const statements = pending[PENDING];
  pending[PENDING] = undefined;
  return statements;
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

/**
 * A PostgreSQL string literal of `text`, as node-postgres's `escapeLiteral` writes it:
 * quotes doubled, and with backslashes doubled in the `E'…'` form, so that it reads the
 * same whatever `standard_conforming_strings` is. `text` holds no NUL (the module's
 * values are made storable first).
 */
export function postgresLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}
