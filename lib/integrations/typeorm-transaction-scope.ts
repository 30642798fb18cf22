import type { DataSource, EntityManager } from 'typeorm';
import { runInTransaction } from '../context/async-frame.js';

/**
 * Patches: `EntityManager.prototype.transaction` (the one `DataSource.transaction()` and
 * `manager.transaction()` call), of the TypeORM copy a data source comes from.
 *
 * Why: `AuditService.log()` called outside any unit of work but inside a transaction must
 * be written in that transaction (it commits and rolls back with the change it describes).
 * TypeORM has no public way to ask "which transaction is the code running now in":
 * subscribers see a transaction start, but not the code that runs inside it. Wrapping the
 * callback of `transaction()` in an `AsyncLocalStorage` scope holding its manager (the
 * module's one, lib/context/async-frame.ts) is the smallest change that answers it. Code
 * that starts a transaction by hand on a query runner is not seen; `log(input, { manager })`
 * covers it.
 *
 * Tested with TypeORM 0.3.20+ and 1.1 (`test/unit/integrations.spec.ts` fails when the
 * patched method is gone or no longer calls its callback with the transaction's manager).
 */
const PATCHED = Symbol.for('nestjs-system-audit:transaction-scope');

type TransactionMethod = ((this: EntityManager, ...args: unknown[]) => Promise<unknown>) & { [PATCHED]?: true };

/** Installs the patch on the TypeORM copy of `dataSource` (once per copy). */
export function attachTransactionScope(dataSource: DataSource): void {
  let proto = Object.getPrototypeOf(dataSource.manager) as Record<string, unknown> | null;
  while (proto && !Object.prototype.hasOwnProperty.call(proto, 'transaction')) proto = Object.getPrototypeOf(proto) as Record<string, unknown> | null;
  const original = proto?.['transaction'] as TransactionMethod | undefined;
  if (!proto || typeof original !== 'function') {
    throw new Error('nestjs-system-audit: EntityManager.prototype.transaction not found; this TypeORM version is not supported');
  }
  if (original[PATCHED]) return;
  const patched: TransactionMethod = function (this: EntityManager, ...args: unknown[]) {
    const index = args.findIndex((arg) => typeof arg === 'function');
    if (index !== -1) {
      const run = args[index] as (manager: EntityManager) => unknown;
      args[index] = (manager: EntityManager) => runInTransaction(manager, () => run(manager));
    }
    return original.apply(this, args);
  };
  patched[PATCHED] = true;
  proto['transaction'] = patched;
}
