import type { DataSource } from 'typeorm';
import { runAsEntityHook, writeAfterStatement, writeBeforeStatement } from '../context/async-frame.js';

/**
 * Patches: the entity event methods of TypeORM's `Broadcaster` (`broadcastBeforeInsertEvent`
 * … `broadcastAfterRecoverEvent`, `broadcastLoadEvent`), on the prototype of the TypeORM copy
 * a data source comes from (found through a query runner's `broadcaster`).
 *
 * Why: the module tells TypeORM's own statements from the app's by where they run — inside
 * a query builder's `execute` (its SQL is not raw, a write made there is the builder's) or
 * inside a `save()`/`remove()` with events (a write with listeners off there is the
 * persistence's own, reported to the subscriber by TypeORM). TypeORM calls the app's
 * subscribers and entity listeners from inside those calls: a query builder's write
 * broadcasts `afterInsert`, `afterUpdate`, `afterRemove`, `afterSoftRemove` from its
 * `execute`, the persistence its events from `save()`. What those hooks write is the app's,
 * yet was taken for the write's own: an `update()` by criteria, a write with listeners off
 * or raw SQL made by an `afterInsert` of `repository.insert()` was not recorded. Each call
 * of these methods (which call every subscriber and listener of the event, synchronously)
 * runs in the module's `AsyncLocalStorage` frame without those marks: the hooks, and the
 * work they start, run as the app's code, and their writes are captured as anywhere else.
 * TypeORM's own statements are sent outside these calls and keep their marks.
 *
 * A write by criteria is recorded from its rows read again after its statement. When the
 * hooks of its after-event write those rows too, that read must come before them (their
 * change is a later one): the after-event of a write whose capture asked for it
 * (`runInsideWrite`'s `afterStatement`) calls its hooks once that work is done, and the
 * broadcast waits for them as for any hook (through one promise in its result). The
 * before-event of such a write calls its hooks at once and then waits, with them, for the
 * capture's work before the statement (`runInsideWrite`'s `beforeStatement`: opening its
 * transaction, reading the rows), which so comes after what those hooks do.
 *
 * Relies on: TypeORM calling subscribers' and entity listeners' entity hooks only from
 * these methods, synchronously, each given a `BroadcasterResult` (its class made without
 * arguments, `promises` and `count`, and `wait()` awaiting its promises) that the caller
 * awaits. Tested with TypeORM 0.3.31 and 1.1 (`test/unit/integrations.spec.ts` fails when a
 * method is gone, when a hook of a query builder's write or of a persistence runs inside
 * its marks, or when the hooks of an after-event run before the work asked for, or are not
 * waited for).
 */
const PATCHED = Symbol.for('nestjs-system-audit:entity-event-hooks');

/** The `Broadcaster` methods that call the app's entity hooks. */
export const ENTITY_EVENT_METHODS = [
  'broadcastBeforeInsertEvent',
  'broadcastBeforeUpdateEvent',
  'broadcastBeforeRemoveEvent',
  'broadcastBeforeSoftRemoveEvent',
  'broadcastBeforeRecoverEvent',
  'broadcastAfterInsertEvent',
  'broadcastAfterUpdateEvent',
  'broadcastAfterRemoveEvent',
  'broadcastAfterSoftRemoveEvent',
  'broadcastAfterRecoverEvent',
  'broadcastLoadEvent',
] as const;

/** The methods of after-events, whose hooks a capture may have wait for its read of the rows written. */
const AFTER_EVENT_METHODS: ReadonlySet<string> = new Set([
  'broadcastAfterInsertEvent',
  'broadcastAfterUpdateEvent',
  'broadcastAfterRemoveEvent',
  'broadcastAfterSoftRemoveEvent',
  'broadcastAfterRecoverEvent',
]);

/** The methods of before-events, after whose hooks a capture may do its work before the statement. */
const BEFORE_EVENT_METHODS: ReadonlySet<string> = new Set([
  'broadcastBeforeInsertEvent',
  'broadcastBeforeUpdateEvent',
  'broadcastBeforeRemoveEvent',
  'broadcastBeforeSoftRemoveEvent',
  'broadcastBeforeRecoverEvent',
]);

type Broadcast = ((this: unknown, ...args: unknown[]) => unknown) & { [PATCHED]?: true };

/** TypeORM's `BroadcasterResult`: the promises of the hooks called, which the caller awaits. */
interface BroadcasterResult {
  count: number;
  promises: Array<Promise<unknown>>;
  wait(): Promise<unknown>;
}

/** The prototype of `dataSource`'s TypeORM `Broadcaster`. */
export function broadcasterPrototype(dataSource: DataSource): Record<string, unknown> {
  // A query runner connects only when it first runs something: making one costs nothing.
  const runner = dataSource.createQueryRunner();
  const broadcaster = (runner as { broadcaster?: object }).broadcaster;
  void runner.release();
  const proto = broadcaster ? (Object.getPrototypeOf(broadcaster) as Record<string, unknown> | null) : null;
  if (!proto) throw new Error("nestjs-system-audit: TypeORM's query runner has no broadcaster; this TypeORM version is not supported");
  return proto;
}

/** Installs the patch on the TypeORM copy of `dataSource` (once per copy). */
export function attachEntityEventHooks(dataSource: DataSource): void {
  const proto = broadcasterPrototype(dataSource);
  for (const name of ENTITY_EVENT_METHODS) {
    const original = proto[name] as Broadcast | undefined;
    if (typeof original !== 'function') throw new Error(`nestjs-system-audit: TypeORM's Broadcaster.prototype.${name} not found; this TypeORM version is not supported`);
    if (original[PATCHED]) continue;
    const after = AFTER_EVENT_METHODS.has(name);
    const before = BEFORE_EVENT_METHODS.has(name);
    const patched: Broadcast = function (this: unknown, ...args: unknown[]) {
      const beforeStatement = before ? writeBeforeStatement() : undefined;
      if (beforeStatement) {
        // The hooks are called at once, with a result of their own; the caller's waits for
        // them and then for the capture's work before the statement.
        const [result, ...rest] = args as [BroadcasterResult, ...unknown[]];
        const own = new (result.constructor as new () => BroadcasterResult)();
        runAsEntityHook(() => original.call(this, own, ...rest));
        result.promises.push(beforeStatement(own.wait()));
        result.count++;
        return undefined;
      }
      const afterStatement = after ? writeAfterStatement() : undefined;
      if (!afterStatement) return runAsEntityHook(() => original.apply(this, args));
      // The hooks are called once the capture has read the rows written, with a result of
      // their own, which the caller's waits for.
      const [result, ...rest] = args as [BroadcasterResult, ...unknown[]];
      const own = new (result.constructor as new () => BroadcasterResult)();
      result.promises.push(
        afterStatement().then(() => {
          runAsEntityHook(() => original.call(this, own, ...rest));
          return own.wait();
        }),
      );
      result.count++;
      return undefined;
    };
    patched[PATCHED] = true;
    proto[name] = patched;
  }
}
