import { AsyncLocalStorage } from 'node:async_hooks';
import type { EntityManager } from 'typeorm';
import type { UnitOfWork } from './unit-of-work.js';

/**
 * What the code running now belongs to, carried by one `AsyncLocalStorage` for the whole
 * module: on Node 20 every storage in use adds work to each promise the process creates
 * (about 0.07 µs per storage per promise), so the unit of work, the transaction's manager
 * and the "inside a query builder" flag share one.
 */
interface AsyncFrame {
  /** The units of work, innermost first, each with the {@link AuditContext} it belongs to (two apps may share a process). */
  readonly units?: UnitLink;
  /** The manager of the innermost `transaction()` callback. */
  readonly manager?: EntityManager;
  /** True while a TypeORM query builder (or TypeORM's own persistence) runs. */
  readonly insideWrite?: true | undefined;
  /**
   * The work the change capture does once the running query builder's statement is done,
   * before the hooks of its after-event run (see {@link writeAfterStatement}).
   */
  readonly afterStatement?: (() => Promise<void>) | undefined;
  /**
   * The work the change capture does before the running query builder's statement, once
   * the hooks of its before-event are done (see {@link writeBeforeStatement}).
   */
  readonly beforeStatement?: ((hooks: Promise<unknown>) => Promise<void>) | undefined;
  /**
   * The data source of the innermost `save()`, `remove()`, `softRemove()` or `recover()`
   * running now: with its events (null: with `{ listeners: false }`).
   */
  readonly persisting?: object | null;
  /** The module's work around a write that may take turns on the app's query runners (see runner-turn). */
  readonly turnHolder?: object;
  /** The query runner whose raw write the code running now captures, when a patched `query` waits for it (see typeorm-after-query-wait). */
  readonly capturing?: object;
}

interface UnitLink {
  readonly owner: object;
  readonly unit: UnitOfWork;
  readonly next: UnitLink | undefined;
}

const storage = new AsyncLocalStorage<AsyncFrame>();

/** Runs `fn` with the current frame plus `changes`. */
function runWith<T>(changes: AsyncFrame, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...changes }, fn);
}

/** Runs `fn` with `unit` as `owner`'s innermost unit of work. */
export function runInUnit<T>(owner: object, unit: UnitOfWork, fn: () => T): T {
  return runWith({ units: { owner, unit, next: storage.getStore()?.units } }, fn);
}

/** `owner`'s innermost unit of work of the code running now, if any. */
export function currentUnit(owner: object): UnitOfWork | undefined {
  for (let link = storage.getStore()?.units; link; link = link.next) {
    if (link.owner === owner) return link.unit;
  }
  return undefined;
}

/** The innermost unit of work of the code running now, whichever application's it is. */
export function innermostUnit(): UnitOfWork | undefined {
  return storage.getStore()?.units?.unit;
}

/** Runs `fn` as the callback of a `transaction()` whose manager is `manager`. */
export function runInTransaction<T>(manager: EntityManager, fn: () => T): T {
  return runWith({ manager }, fn);
}

/** The manager of the innermost `transaction()` callback running now, if any. */
export function currentTransactionManager(): EntityManager | undefined {
  return storage.getStore()?.manager;
}

/**
 * Runs `fn` as a TypeORM query builder's execution; `afterStatement`, when given, is run
 * once its statement is done, before the app's hooks of its after-event (`afterInsert`,
 * `afterUpdate`, …) are called; `beforeStatement`, once the app's hooks of its
 * before-event (`beforeInsert`, `beforeUpdate`, …) are done, before its statement.
 */
export function runInsideWrite<T>(fn: () => T, afterStatement?: () => Promise<void>, beforeStatement?: () => Promise<void>): T {
  let done: Promise<void> | undefined;
  // Once, whichever hooks of the write ask for it first (an insert's are called per row).
  const once = afterStatement && (() => (done ??= afterStatement()));
  // Once every hook called is done: TypeORM calls an insert's per row, one after the other
  // in the same turn, then waits for them all.
  const hooks: Array<Promise<unknown>> = [];
  let ready: Promise<void> | undefined;
  const before =
    beforeStatement &&
    ((called: Promise<unknown>) => {
      hooks.push(called);
      return (ready ??= Promise.resolve()
        .then(() => Promise.all(hooks))
        .then(() => beforeStatement()));
    });
  return runWith({ insideWrite: true, afterStatement: once, beforeStatement: before }, fn);
}

/** The work to run once the hooks of the before-event of the query builder write running now are done (given the promise of those called). */
export function writeBeforeStatement(): ((hooks: Promise<unknown>) => Promise<void>) | undefined {
  return storage.getStore()?.beforeStatement;
}

/** The work to run before the hooks of the after-event of the query builder write running now (its own frame, not a hook's). */
export function writeAfterStatement(): (() => Promise<void>) | undefined {
  return storage.getStore()?.afterStatement;
}

/** True while a TypeORM query builder (or TypeORM's own persistence) runs: its SQL is not "raw". */
export function isInsideQueryBuilder(): boolean {
  return storage.getStore()?.insideWrite === true;
}

/**
 * Runs `fn` as an app's hook of an entity event (a subscriber's `afterInsert`, an entity
 * listener): its code is the app's own, not the write that called it. Its writes are then
 * the app's, captured as the same writes made anywhere else, not taken for the write's (or
 * a persistence's) own statements. The unit of work and the transaction's manager stay.
 */
export function runAsEntityHook<T>(fn: () => T): T {
  const frame = storage.getStore();
  if (frame?.insideWrite === undefined && frame?.persisting === undefined && frame?.afterStatement === undefined && frame?.beforeStatement === undefined) return fn();
  const { insideWrite: _write, persisting: _persisting, afterStatement: _after, beforeStatement: _before, ...rest } = frame;
  return storage.run(rest, fn);
}

/**
 * Runs `fn` as a `save()`, `remove()`, `softRemove()` or `recover()` of `dataSource`'s
 * manager: with events (`dataSource`), or with `{ listeners: false }` (null).
 */
export function runPersisting<T>(dataSource: object | null, fn: () => T): T {
  return runWith({ persisting: dataSource }, fn);
}

/** True while a `save()`, `remove()`, `softRemove()` or `recover()` of `dataSource` with its events runs. */
export function isPersistingWithEvents(dataSource: object): boolean {
  return storage.getStore()?.persisting === dataSource;
}

/** Runs `fn` as the work `token` stands for, which may hold turns on query runners (see runner-turn). */
export function runAsTurnHolder<T>(token: object, fn: () => T): T {
  return runWith({ turnHolder: token }, fn);
}

/** The work holding turns the code running now belongs to, if any (see {@link runAsTurnHolder}). */
export function currentTurnHolder(): object | undefined {
  return storage.getStore()?.turnHolder;
}

/** Runs `fn` as the capture of a raw write made on `runner`, which the write's `query` waits for (see typeorm-after-query-wait). */
export function runAsCapture<T>(runner: object, fn: () => T): T {
  return runWith({ capturing: runner }, fn);
}

/** True when the code running now is the capture of a raw write made on `runner` (see {@link runAsCapture}). */
export function isCapturing(runner: object): boolean {
  return storage.getStore()?.capturing === runner;
}
