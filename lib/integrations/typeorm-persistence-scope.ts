import type { DataSource, EntityManager } from 'typeorm';
import { runPersisting } from '../context/async-frame.js';

/**
 * Patches: `EntityManager.prototype.save`, `remove`, `softRemove` and `recover` (which
 * `Repository`, `BaseEntity` and tree repositories call), of the TypeORM copy a data
 * source comes from.
 *
 * Why: TypeORM's persistence makes its writes through query builders with listeners off
 * and, unless given `{ listeners: false }`, reports them to subscribers itself; a query
 * builder's `.callListeners(false)` write, or a persistence with `{ listeners: false }`,
 * reaches no subscriber, and the module must capture it itself. Nothing on the query
 * builder tells the two apart. Running each of these methods in an `AsyncLocalStorage`
 * scope (the module's one, lib/context/async-frame.ts) that names its data source when it
 * reports its writes does: a listener-less write made within that scope is the
 * persistence's own. The scope follows the call, not its query runner, so concurrent
 * requests on one runner (SQLite's) stay apart, and a persistence that ends without
 * writing (its listener undid every change) leaves nothing behind.
 *
 * Tested with TypeORM 0.3.20+ and 1.1 (`test/unit/integrations.spec.ts` fails when a
 * patched method is gone or no longer runs its persistence inside the call).
 */
const PATCHED = Symbol.for('nestjs-system-audit:persistence-scope');

/** The persistence methods patched. */
export const PERSISTENCE_METHODS = ['save', 'remove', 'softRemove', 'recover'] as const;

type PersistMethod = ((this: EntityManager, ...args: unknown[]) => Promise<unknown>) & { [PATCHED]?: true };

/**
 * The options of a persistence call, found as TypeORM finds them: `(entity, options)`, or
 * `(target, entity, options)` when more than one argument is given and the first is a
 * target (a class, an entity name, an `EntitySchema`).
 */
export function persistenceOptions(args: readonly unknown[]): unknown {
  const [first] = args;
  const isSchema = typeof first === 'object' && first !== null && (first as Record<string, unknown>)['@instanceof'] === Symbol.for('EntitySchema');
  const target = args.length > 1 && (typeof first === 'function' || typeof first === 'string' || isSchema);
  return target ? args[2] : args[1];
}

/** Installs the patch on the TypeORM copy of `dataSource` (once per copy). */
export function attachPersistenceScope(dataSource: DataSource): void {
  for (const name of PERSISTENCE_METHODS) {
    let proto = Object.getPrototypeOf(dataSource.manager) as Record<string, unknown> | null;
    while (proto && !Object.prototype.hasOwnProperty.call(proto, name)) proto = Object.getPrototypeOf(proto) as Record<string, unknown> | null;
    const original = proto?.[name] as PersistMethod | undefined;
    if (!proto || typeof original !== 'function') {
      throw new Error(`nestjs-system-audit: EntityManager.prototype.${name} not found; this TypeORM version is not supported`);
    }
    if (original[PATCHED]) continue;
    const patched: PersistMethod = function (this: EntityManager, ...args: unknown[]) {
      const options = persistenceOptions(args) as { listeners?: unknown } | null | undefined;
      const events = options?.listeners !== false;
      return runPersisting(events ? this.connection : null, () => original.apply(this, args));
    };
    patched[PATCHED] = true;
    proto[name] = patched;
  }
}
