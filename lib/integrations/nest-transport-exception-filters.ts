import type { ArgumentsHost } from '@nestjs/common';
import { from, mergeMap, type Observable } from 'rxjs';

/**
 * Patches: `catch` on `BaseRpcExceptionFilter.prototype` (`@nestjs/microservices`) and
 * `BaseWsExceptionFilter.prototype` (`@nestjs/websockets`), each only when its package is
 * installed (loaded with a dynamic `import()`).
 *
 * Why: a microservice or WebSocket call that a guard turns away never reaches an
 * interceptor, and its error goes back to the client from the transport's base exception
 * filter (also when a filter of the app extends it). Nest gives an exception to one filter
 * only: a global filter of the module's own (`APP_FILTER`) would either take the exception
 * from the app's filters or never see it, and no other hook sees an exception on its way to
 * the client. Wrapping the base filters' `catch` stores a denied call before its error is
 * sent, whichever of them the app uses.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when either
 * `catch` is gone).
 */

/** Settles a failing call if it is one of the listener's; resolves once its record is stored. */
export type TransportExceptionListener = (host: ArgumentsHost, exception: unknown) => Promise<void> | undefined;

/** The transports whose base exception filter is patched. */
export type FilteredTransport = 'rpc' | 'ws';

type Catch = ((this: unknown, exception: unknown, host: ArgumentsHost) => unknown) & { [PATCHED]?: true };
type FilterClass = { prototype: { catch: Catch } };

const PATCHED = Symbol.for('nestjs-system-audit:denied-calls');
/** The listeners of every application in this process. */
const listeners = new Set<TransportExceptionListener>();

const FILTERS: Record<FilteredTransport, { name: string; load: () => Promise<FilterClass> }> = {
  rpc: {
    name: '@nestjs/microservices BaseRpcExceptionFilter',
    load: async () => (await import('@nestjs/microservices')).BaseRpcExceptionFilter as unknown as FilterClass,
  },
  ws: {
    name: '@nestjs/websockets BaseWsExceptionFilter',
    load: async () => (await import('@nestjs/websockets')).BaseWsExceptionFilter as unknown as FilterClass,
  },
};

/** Asks each listener whether the failing call is one of its calls; the first that is settles it. */
function settle(host: ArgumentsHost, exception: unknown): Promise<void> | undefined {
  for (const listener of listeners) {
    const stored = listener(host, exception);
    if (stored) return stored;
  }
  return undefined;
}

/**
 * The base exception filter class of `transport`, or `undefined` when its package is not
 * installed.
 *
 * @throws Error naming the filter when it is installed but has no `catch` method any more.
 */
export async function loadTransportExceptionFilter(transport: FilteredTransport): Promise<FilterClass | undefined> {
  const { name, load } = FILTERS[transport];
  let filter: FilterClass;
  try {
    filter = await load();
  } catch {
    return undefined; // that transport's package is not installed
  }
  if (typeof filter?.prototype?.catch !== 'function') {
    throw new Error(`nestjs-system-audit: ${name}.prototype.catch not found; this NestJS version is not supported`);
  }
  return filter;
}

/**
 * Adds `listener`, asked about every exception that reaches a transport's base exception
 * filter before the filter handles it, and patches the filters of the installed transport
 * packages (once per process). Resolves with the transports patched by this call.
 */
export async function listenToTransportExceptionFilters(listener: TransportExceptionListener): Promise<FilteredTransport[]> {
  listeners.add(listener);
  const patched = await Promise.all((Object.keys(FILTERS) as FilteredTransport[]).map(async (transport) => ((await patch(transport)) ? transport : undefined)));
  return patched.filter((transport): transport is FilteredTransport => transport !== undefined);
}

/** Removes `listener` (the patches stay, inert without listeners). */
export function stopListeningToTransportExceptionFilters(listener: TransportExceptionListener): void {
  listeners.delete(listener);
}

async function patch(transport: FilteredTransport): Promise<boolean> {
  const filter = await loadTransportExceptionFilter(transport);
  if (!filter) return false;
  const original = filter.prototype.catch;
  if (original[PATCHED]) return false;
  const patched: Catch =
    transport === 'rpc'
      ? function (this: unknown, exception, host) {
          const stored = settle(host, exception);
          if (!stored) return original.call(this, exception, host);
          return from(stored).pipe(mergeMap(() => original.call(this, exception, host) as Observable<unknown>));
        }
      : function (this: unknown, exception, host) {
          const stored = settle(host, exception);
          if (!stored) return original.call(this, exception, host);
          void stored.then(() => original.call(this, exception, host));
          return undefined;
        };
  patched[PATCHED] = true;
  filter.prototype.catch = patched;
  return true;
}
