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
  readonly insideWrite?: true;
  /**
   * The data source of the innermost `save()`, `remove()`, `softRemove()` or `recover()`
   * running now: with its events (null: with `{ listeners: false }`).
   */
  readonly persisting?: object | null;
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

/** Runs `fn` as a TypeORM query builder's execution. */
export function runInsideWrite<T>(fn: () => T): T {
  return runWith({ insideWrite: true }, fn);
}

/** True while a TypeORM query builder (or TypeORM's own persistence) runs: its SQL is not "raw". */
export function isInsideQueryBuilder(): boolean {
  return storage.getStore()?.insideWrite === true;
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
