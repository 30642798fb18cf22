import type { DataSource, QueryRunner } from 'typeorm';
import { holdsTurn } from '../capture/runner-turn.js';
import { isCapturing, runAsCapture } from '../context/async-frame.js';

/**
 * Patches: `query` of the query runner class a data source's queries go through, of the
 * TypeORM copy it comes from, when that method does not wait for the promises subscribers
 * return from `afterQuery` before it resolves — TypeORM 0.3's `MysqlQueryRunner` (MySQL
 * and MariaDB: it awaits them in a `finally` that runs before the driver's callback, which
 * broadcasts `AfterQuery` and resolves the query) and `BetterSqlite3QueryRunner` (it never
 * awaits them). TypeORM 1 waits for them on every driver: nothing is patched there.
 *
 * Why: a raw SQL write (`query('UPDATE …')`, `clear()`) is captured in `afterQuery`, the
 * only place that sees it. When `query()` resolves before that work is done, the app goes
 * on meanwhile: a change recorded after the transaction has ended is recorded outside it
 * (its COMMIT was written without it, or the change was rolled back and is recorded
 * anyway); outside a transaction the app answers before the change is stored or
 * journaled, and a journal row written after its unit was stored outlives it and is
 * recovered as a second record. The patched `query` resolves (or rejects) only once the
 * work {@link waitForCapture} handed it is done, as TypeORM 1 does: the capture fails the
 * query when it fails.
 *
 * Relies on: subscribers' `afterQuery` being called before the query's promise settles
 * (true of both: each broadcasts `AfterQuery`, then resolves). The work waited for is the one
 * handed over since the query started, each numbered before it starts. A statement a
 * capture sends on the runner of the write it captures (a journal write, a fallback
 * event, the writer's read of `max_allowed_packet`) waits for no capture: not for the one
 * sending it, nor for one handed over meanwhile for another write on the same runner,
 * which may itself wait for that statement (two raw writes sent at once on one runner:
 * the second one's capture awaits the first one's read of the packet size, shared by
 * every write until it is known). Nor does a statement of the write holding the runner's
 * turn (lib/capture/runner-turn.ts): the capture of a raw write the app sent on the runner
 * before that write opened its transaction waits for the turn to write its record there,
 * and the write's statements have no capture of their own to wait for. A query fails with
 * the failure of its own work only, as where TypeORM waits by itself (not with that of
 * another write's work it waited for): the work is its query's by the text and parameters
 * the `afterQuery` event has, the first query sent with them that has none yet (a
 * runner's statements end in the order sent).
 *
 * Whether `query` waits by itself is read from its source: it does when it awaits
 * `broadcasterResult.wait()` in a `finally` and does not resolve from a callback (`new
 * Promise`). Any other shape is patched, which costs one `then` per query. Tested with
 * TypeORM 0.3.31 and 1.1 (`test/unit/integrations.spec.ts` fails when `query` resolves
 * before the work handed to it is done, or when the patch is installed where TypeORM
 * waits by itself or left out where it does not).
 */
const PATCHED = Symbol.for('nestjs-system-audit:after-query-wait');
/**
 * On a `query` the module wrapped (lib/integrations/typeorm-commit-statements.ts): the
 * method it wraps, whose source says whether TypeORM waits for `afterQuery` work.
 */
export const WRAPPED_QUERY = Symbol.for('nestjs-system-audit:wrapped-query');
/** Capture work handed to a query runner's queries: numbered in order, removed once settled. */
const WORK = Symbol.for('nestjs-system-audit:after-query-wait:work');

/** A query sent on a runner and not settled yet, with the work its own `afterQuery` handed over (once it has). */
interface Sent {
  query: string;
  parameters: unknown;
  own?: Promise<unknown>;
}
interface Work {
  next: number;
  open: Map<number, Promise<unknown>>;
  /** Queries not settled yet, in the order sent: a work is its query's, the first unclaimed one of the same text and parameters. */
  sent: Sent[];
  /** Work no query sent here claimed: its failure fails each query waiting for it. */
  unclaimed: WeakSet<Promise<unknown>>;
}

/** The query an `afterQuery` event is about. */
export interface CapturedQuery {
  queryRunner: QueryRunner;
  query: string;
  parameters?: unknown;
}
type Query = ((this: Waiting, query: string, parameters?: unknown[], structured?: boolean) => Promise<unknown>) & { [PATCHED]?: true };
type Prototype = { query?: Query; [PATCHED]?: boolean };
type Waiting = QueryRunner & { [WORK]?: Work; [PATCHED]?: boolean };

/** The shape of a `query` that waits for its `afterQuery` work: the broadcast's result awaited in a `finally`. */
const AWAITS_IN_FINALLY = /finally\s*\{\s*await\s+broadcasterResult\.wait\(\)/;
/** …which a query resolved from a driver's callback does not, the `finally` having run before it. */
const RESOLVES_FROM_CALLBACK = /new\s+Promise\s*\(/;

/** Whether the source of a `query` method waits, before it settles, for the promises `afterQuery` returns. */
export function queryAwaitsAfterQuery(source: string): boolean {
  return AWAITS_IN_FINALLY.test(source) && !RESOLVES_FROM_CALLBACK.test(source);
}

/**
 * Installs the patch on the query runner class of `dataSource`'s TypeORM copy when its
 * `query` does not wait for `afterQuery` work (once per class). Returns whether that
 * class's queries now wait for the work handed to {@link waitForCapture}.
 */
export function attachAfterQueryWait(dataSource: DataSource): boolean {
  const proto = runnerPrototype(dataSource);
  if (!proto || typeof proto.query !== 'function') return false;
  if (proto[PATCHED] !== undefined) return proto[PATCHED];
  const original = proto.query;
  const needed = !queryAwaitsAfterQuery(Function.prototype.toString.call(typeormsQuery(original)));
  proto[PATCHED] = needed;
  if (!needed) return false;
  const patched: Query = function (this: Waiting, query, parameters, structured) {
    // A capture's own statement, or one of the write holding the runner's turn: see above.
    if (isCapturing(this) || holdsTurn(this)) return original.call(this, query, parameters, structured);
    const state = workOf(this);
    const from = state.next;
    const sent: Sent = { query, parameters };
    state.sent.push(sent);
    const settled = (): Promise<unknown> | undefined => {
      const index = state.sent.indexOf(sent);
      if (index !== -1) state.sent.splice(index, 1);
      return workSince(state, from, sent.own);
    };
    return original.call(this, query, parameters, structured).then(
      (result) => {
        const work = settled();
        return work ? work.then(() => result) : result;
      },
      (error: unknown) => {
        const work = settled();
        if (!work) throw error;
        const rethrow = (): never => {
          throw error;
        };
        return work.then(rethrow, rethrow);
      },
    );
  };
  patched[PATCHED] = true;
  proto.query = patched;
  return true;
}

/** Whether `runner`'s queries wait for the work handed to {@link waitForCapture} (false where TypeORM waits by itself). */
export function queriesWaitForCapture(runner: QueryRunner): boolean {
  return (runner as Waiting)[PATCHED] === true;
}

/**
 * Runs `start` — the work `afterQuery` returns for a query of `runner` — and hands that
 * work to the query: it settles once the work has. The work's place is taken before it
 * starts, so that a statement it sends on `runner` before its first `await` (a fallback
 * event stored on the connection the app holds) counts as its own and does not wait for
 * it; the work runs as a capture, whose statements wait for no capture (see above).
 * Returns the work's promise; where TypeORM waits for it by itself, only runs it.
 */
export function waitForCapture<T>(event: CapturedQuery, start: () => Promise<T>): Promise<T> {
  const runner = event.queryRunner;
  const waiting = runner as Waiting;
  if (waiting[PATCHED] !== true) return start();
  const state = workOf(waiting);
  const id = state.next++;
  let work: Promise<T>;
  try {
    work = runAsCapture(runner, start);
  } catch (error) {
    work = Promise.reject(error);
  }
  state.open.set(id, work);
  // Its query's own: only that query fails with it (as where TypeORM waits by itself).
  const sent = state.sent.find((query) => query.own === undefined && query.query === event.query && sameParameters(query.parameters, event.parameters));
  if (sent) sent.own = work;
  else state.unclaimed.add(work);
  const done = (): void => {
    state.open.delete(id);
  };
  void work.then(done, done);
  return work;
}

/** TypeORM's own `query` under the module's wrappers of it. */
function typeormsQuery(query: Query): Query {
  let inner = query as Query & { [WRAPPED_QUERY]?: Query };
  while (typeof inner[WRAPPED_QUERY] === 'function') inner = inner[WRAPPED_QUERY];
  return inner;
}

/** The parameters a query was sent with, and those its `afterQuery` event has (better-sqlite3 gives one sent without any an empty array). */
function sameParameters(sent: unknown, seen: unknown): boolean {
  return sent === seen || (sent === undefined && Array.isArray(seen) && seen.length === 0);
}

/** The capture work of `runner`'s queries. */
function workOf(runner: Waiting): Work {
  return (runner[WORK] ??= { next: 0, open: new Map(), sent: [], unclaimed: new WeakSet() });
}

/**
 * What a query that started when `state` numbered `from` waits for, as one promise
 * (undefined when nothing): the work handed over since then that is still running, and its
 * own work (`own`). It fails with its own work's failure (or an unclaimed one's), not with
 * that of another query's work it waited for.
 */
function workSince(state: Work, from: number, own: Promise<unknown> | undefined): Promise<unknown> | undefined {
  const running = state.open.size ? [...state.open].filter(([id, work]) => id >= from && work !== own).map(([, work]) => work) : [];
  if (running.length === 0) return own;
  return Promise.all(running.map((work) => (state.unclaimed.has(work) ? work : work.catch(() => undefined)))).then(() => own);
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
