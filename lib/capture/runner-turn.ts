import type { QueryRunner } from 'typeorm';
import { currentTurnHolder, runAsTurnHolder } from '../context/async-frame.js';

/**
 * Turns on a query runner the app holds, for the transactions the module opens on it
 * around a write the app made there in none.
 *
 * Why: the app may send several statements at once on one query runner (`Promise.all` of
 * writes on its manager): the database runs them one after the other, each committed on
 * its own. A transaction the module opens on that connection around one of them would take
 * in the others sent meanwhile — its rollback (that write failing) undoing them, its
 * commit ending the transaction the module opened around another. While such a
 * transaction is open, the runner's other statements (those not sent by the work holding
 * the turn) wait for it to end; the next write waits for its turn before opening its own,
 * and so do a transaction the app starts on the runner and its `release()`.
 * No app code runs while a turn is held: the app's hooks of the write's before-event run
 * before it is taken, those of its after-event once it is given back.
 */
const turns = new WeakMap<QueryRunner, Promise<void>>();
/** The work holding each runner's turn now. */
const holders = new WeakMap<QueryRunner, object>();

/**
 * The runner's methods that wait for its turn when called from elsewhere: its statements;
 * a transaction the app starts on it (TypeORM marks the runner in one at once, and would
 * take the module's transaction open on it for its own: a savepoint in it, lost with its
 * commit); and its release — the app releasing the runner without waiting for a write it
 * sent on it has the connection go back to the pool once the turn is given back, not with
 * the turn's transaction open on it, or its record half written. (Code of the turn's own,
 * an app subscriber's hook of one of its statements, calls them at once: it would
 * otherwise wait for the turn it is part of.)
 */
const DEFERRED = ['query', 'startTransaction', 'release'] as const;
type Deferred = (typeof DEFERRED)[number];
type RunnerMethod = (...args: unknown[]) => Promise<unknown>;
/** The methods {@link takeTurn} sets on runners. */
const wrappers = new WeakSet<RunnerMethod>();

/**
 * Waits for `runner`'s turn, then holds it for `token` (see `runAsTurnHolder`):
 * statements sent on `runner` from elsewhere wait until the returned function gives it back.
 */
export async function takeTurn(runner: QueryRunner, token: object): Promise<() => void> {
  const previous = turns.get(runner) ?? Promise.resolve();
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  turns.set(
    runner,
    previous.then(() => done),
  );
  await previous;
  // The runner's methods the app may call meanwhile wait for the turn to end, unless the
  // code holding it calls them (see DEFERRED).
  const owns = new Map<Deferred, RunnerMethod | undefined>();
  for (const name of DEFERRED) {
    const own = Object.prototype.hasOwnProperty.call(runner, name) ? (runner as unknown as Record<Deferred, RunnerMethod>)[name] : undefined;
    owns.set(name, own);
    const original = own ?? (Object.getPrototypeOf(runner) as Record<Deferred, RunnerMethod>)[name];
    // Once the turn is given back: through the next turn's wrapper if one is taken by then,
    // else the method as it was (not one the app set meanwhile: it may be the caller).
    const deferred = (...args: unknown[]): Promise<unknown> =>
      currentTurnHolder() === token
        ? original.apply(runner, args)
        : done.then(() => {
            const now = (runner as unknown as Record<Deferred, RunnerMethod>)[name];
            return (wrappers.has(now) ? now : original).apply(runner, args);
          });
    wrappers.add(deferred);
    Object.defineProperty(runner, name, { value: deferred, configurable: true, writable: true });
  }
  holders.set(runner, token);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    holders.delete(runner);
    for (const [name, own] of owns) {
      // One the app set meanwhile stays.
      if (!wrappers.has((runner as unknown as Record<Deferred, RunnerMethod>)[name])) continue;
      if (own) Object.defineProperty(runner, name, { value: own, configurable: true, writable: true });
      else delete (runner as unknown as Partial<Record<Deferred, RunnerMethod>>)[name];
    }
    release();
  };
}

/**
 * Whether another work than the code running now holds `runner`'s turn: the transaction
 * open on it then is that work's. A statement the app sent on the runner is run outside
 * it (before it opened, or once it ends): what is recorded of the statement is not that
 * transaction's, and no record of it is written on the runner meanwhile.
 */
export function heldElsewhere(runner: QueryRunner | undefined): boolean {
  const token = runner ? holders.get(runner) : undefined;
  return token !== undefined && currentTurnHolder() !== token;
}

/** Whether the code running now holds `runner`'s turn (see {@link takeTurn}). */
export function holdsTurn(runner: QueryRunner): boolean {
  const token = holders.get(runner);
  return token !== undefined && currentTurnHolder() === token;
}

/**
 * Runs `work` in a turn of `runner`'s of its own, once the write holding it (if any) has
 * given it back: for the record of a statement the app ran on it outside any transaction,
 * written on that connection (see holdsConnection) neither inside another write's
 * transaction nor beside one the next write opens meanwhile. `work` is given whether it
 * runs in the turn: when `runner` may no longer be written on once the turn is taken
 * (`usable` false: released meanwhile, or a transaction open on it), it runs after the
 * turn is given back, so that what it waits for then (a connection of the pool) holds
 * back none of the app's statements on the runner. In the code holding the turn already,
 * `work` runs at once.
 */
export async function inOwnTurn<T>(runner: QueryRunner, usable: () => boolean, work: (inTurn: boolean) => Promise<T>): Promise<T> {
  if (holdsTurn(runner)) return work(usable());
  const token = {};
  const giveBack = await takeTurn(runner, token);
  if (!usable()) {
    giveBack();
    return work(false);
  }
  try {
    return await runAsTurnHolder(token, () => work(true));
  } finally {
    giveBack();
  }
}
