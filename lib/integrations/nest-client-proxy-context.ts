import { AsyncResource } from 'node:async_hooks';
import { Observable } from 'rxjs';

/**
 * Patches: `send` and `emit` on `ClientProxy.prototype` (`@nestjs/microservices`, the base
 * class of the TCP, Redis, NATS, MQTT, RabbitMQ and Kafka clients), only when the package
 * is installed (loaded with a dynamic `import()`).
 *
 * Why: a client's connection (a socket, a broker subscription) calls back in the async
 * context of the code that opened it: the first request that used the client. The
 * Observable `send()` returns delivers its reply from that callback, so the operators
 * the app pipes after it (`concatMap` saving the answer) ran in that request's unit of
 * work: a second request's save was claimed by the first one, or stored as late work of
 * the first one once it had ended. Each subscriber of the returned Observable now gets
 * its notifications in the async context it subscribed in (its own request's), through
 * an `AsyncResource` taken at subscription. Values, errors, unsubscription and the
 * timing of each notification are the client's own.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when either method
 * is gone, or a transport's client no longer uses `ClientProxy`'s).
 */

type ClientMethod = ((this: unknown, pattern: unknown, data: unknown) => unknown) & { [PATCHED]?: true };
type ClientProxyClass = { prototype: { send: ClientMethod; emit: ClientMethod } };

const PATCHED = Symbol.for('nestjs-system-audit:client-proxy-context');
const METHODS = ['send', 'emit'] as const;

/**
 * `ClientProxy` of `@nestjs/microservices`, or `undefined` when the package is not installed.
 *
 * @throws Error naming the method when it is installed but has no `send` or `emit` any more.
 */
export async function loadClientProxy(): Promise<ClientProxyClass | undefined> {
  let client: ClientProxyClass;
  try {
    client = (await import('@nestjs/microservices')).ClientProxy as unknown as ClientProxyClass;
  } catch {
    return undefined; // @nestjs/microservices is not installed
  }
  for (const method of METHODS) {
    if (typeof client?.prototype?.[method] !== 'function') {
      throw new Error(`nestjs-system-audit: @nestjs/microservices ClientProxy.prototype.${method} not found; this NestJS version is not supported`);
    }
  }
  return client;
}

/**
 * `source`, each of whose subscribers gets its notifications in the async context it
 * subscribed in (synchronously, as the source delivers them).
 */
export function inSubscriberContext<T>(source: Observable<T>): Observable<T> {
  return new Observable<T>((subscriber) => {
    const scope = new AsyncResource('nestjs-system-audit:client-reply');
    return source.subscribe({
      next: (value) => scope.runInAsyncScope(subscriber.next, subscriber, value),
      error: (error: unknown) => scope.runInAsyncScope(subscriber.error, subscriber, error),
      complete: () => scope.runInAsyncScope(subscriber.complete, subscriber),
    });
  });
}

/**
 * Patches `ClientProxy.prototype.send` and `emit` (once per process). Resolves with true
 * when `@nestjs/microservices` is installed (patched now or before), false when it is not.
 */
export async function deliverClientRepliesInSubscriberContext(): Promise<boolean> {
  const client = await loadClientProxy();
  if (!client) return false;
  for (const method of METHODS) {
    const original = client.prototype[method];
    if (original[PATCHED]) continue;
    const patched: ClientMethod = function (this: unknown, pattern, data) {
      const result = original.call(this, pattern, data);
      return typeof (result as Partial<Observable<unknown>> | undefined)?.subscribe === 'function' ? inSubscriberContext(result as Observable<unknown>) : result;
    };
    patched[PATCHED] = true;
    client.prototype[method] = patched;
  }
  return true;
}
