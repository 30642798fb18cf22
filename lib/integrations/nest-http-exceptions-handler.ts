import type { ArgumentsHost } from '@nestjs/common';

/**
 * Patches: `next` on `ExceptionsHandler.prototype` (`@nestjs/core/exceptions/exceptions-handler.js`,
 * an internal of Nest's, loaded with a dynamic `import()`): the method Nest's router hands
 * the exception of an HTTP route (or middleware) to, which passes it to the app's exception
 * filters, else to Nest's base filter.
 *
 * Why: an HTTP request's unit is settled when its response is about to be sent, from what
 * the response says. An exception thrown outside the audit interceptor (by an app-level
 * interceptor after the handler succeeded: a transaction that rolls back and throws, by
 * Nest while writing the handler's result) never passes through it: only its status would
 * reach the unit, not its class. Nest gives an exception to one filter only: a global
 * filter of the module's own (`APP_FILTER`) would either take the exception from the app's
 * filters or never see it. Every HTTP exception reaches `ExceptionsHandler.next` first,
 * whichever filter answers it.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when `next` is gone
 * or no longer tells the listener before an app's filter answers).
 */

/** Told of every exception Nest's HTTP exception layer handles, before any filter answers it. */
export type HttpExceptionListener = (host: ArgumentsHost, exception: unknown) => void;

type Next = ((this: unknown, exception: unknown, host: ArgumentsHost) => unknown) & { [PATCHED]?: true };
type HandlerClass = { prototype: { next: Next } };

const PATCHED = Symbol.for('nestjs-system-audit:http-exceptions');
const NAME = '@nestjs/core ExceptionsHandler';
/** The listeners of every application in this process. */
const listeners = new Set<HttpExceptionListener>();

/**
 * Nest's `ExceptionsHandler` class.
 *
 * @throws Error naming it when it is gone or has no `next` method any more.
 */
export async function loadHttpExceptionsHandler(): Promise<HandlerClass> {
  let handler: HandlerClass | undefined;
  try {
    handler = (await import('@nestjs/core/exceptions/exceptions-handler.js')).ExceptionsHandler as unknown as HandlerClass;
  } catch {
    handler = undefined;
  }
  if (typeof handler?.prototype?.next !== 'function') {
    throw new Error(`nestjs-system-audit: ${NAME}.prototype.next not found; this NestJS version is not supported`);
  }
  return handler;
}

/** Adds `listener` and patches `ExceptionsHandler.prototype.next` (once per process). */
export async function listenToHttpExceptions(listener: HttpExceptionListener): Promise<void> {
  const handler = await loadHttpExceptionsHandler();
  listeners.add(listener);
  const original = handler.prototype.next;
  if (original[PATCHED]) return;
  const patched: Next = function (this: unknown, exception, host) {
    for (const each of listeners) {
      try {
        each(host, exception);
      } catch {
        // a listener never stands between an exception and its filter
      }
    }
    return original.call(this, exception, host);
  };
  patched[PATCHED] = true;
  handler.prototype.next = patched;
}

/** Removes `listener` (the patch stays, inert without listeners). */
export function stopListeningToHttpExceptions(listener: HttpExceptionListener): void {
  listeners.delete(listener);
}
