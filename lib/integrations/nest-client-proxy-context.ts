import { AsyncResource } from 'node:async_hooks';
import { Observable } from 'rxjs';

/**
 * Patches: `send` and `emit` on `ClientProxy.prototype` (`@nestjs/microservices`, the base
 * class of the TCP, Redis, NATS, MQTT, RabbitMQ and Kafka clients), and
 * `ClientGrpcProxy.prototype.createServiceMethod` (which makes each method of the service
 * `ClientGrpc.getService()` returns), only when the package is installed (loaded with a
 * dynamic `import()`).
 *
 * Why: a client's connection (a socket, a broker subscription) calls back in the async
 * context of the code that opened it: the first request that used the client. The
 * Observable `send()` returns delivers its reply from that callback, so the operators
 * the app pipes after it (`concatMap` saving the answer) ran in that request's unit of
 * work: a second request's save was claimed by the first one, or stored as late work of
 * the first one once it had ended. A gRPC channel does the same with the calls made while
 * it connects: @grpc/grpc-js starts them, and delivers their replies, in the context of
 * its connection's callbacks (a save piped after such a reply was a `system` change).
 * Each subscriber of the returned Observable now gets its notifications in the async
 * context it subscribed in (its own request's), through an `AsyncResource` taken at
 * subscription. Values, errors, unsubscription and the timing of each notification are
 * the client's own.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when one of the
 * methods is gone, a transport's client no longer uses `ClientProxy`'s, or
 * `getService()` no longer makes its methods with `createServiceMethod`).
 */

type ClientMethod = ((this: unknown, pattern: unknown, data: unknown) => unknown) & { [PATCHED]?: true };
type ClientProxyClass = { prototype: { send: ClientMethod; emit: ClientMethod } };
type ServiceMethodFactory = ((this: unknown, client: unknown, methodName: string) => unknown) & { [PATCHED]?: true };
type ClientGrpcProxyClass = { prototype: { createServiceMethod: ServiceMethodFactory } };

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
 * `ClientGrpcProxy` of `@nestjs/microservices` (the class of `ClientGrpc` clients), or
 * `undefined` when the package is not installed.
 *
 * @throws Error when it is installed but has no `createServiceMethod` any more.
 */
export async function loadClientGrpcProxy(): Promise<ClientGrpcProxyClass | undefined> {
  let client: ClientGrpcProxyClass;
  try {
    client = (await import('@nestjs/microservices')).ClientGrpcProxy as unknown as ClientGrpcProxyClass;
  } catch {
    return undefined; // @nestjs/microservices is not installed
  }
  if (typeof client?.prototype?.createServiceMethod !== 'function') {
    throw new Error('nestjs-system-audit: @nestjs/microservices ClientGrpcProxy.prototype.createServiceMethod not found; this NestJS version is not supported');
  }
  return client;
}

const isObservable = (value: unknown): value is Observable<unknown> => typeof (value as Partial<Observable<unknown>> | undefined)?.subscribe === 'function';

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
 * Patches `ClientProxy.prototype.send` and `emit`, and
 * `ClientGrpcProxy.prototype.createServiceMethod` (once per process). Resolves with true
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
      return isObservable(result) ? inSubscriberContext(result) : result;
    };
    patched[PATCHED] = true;
    client.prototype[method] = patched;
  }
  const grpc = await loadClientGrpcProxy();
  const createServiceMethod = grpc?.prototype.createServiceMethod;
  if (grpc && createServiceMethod && !createServiceMethod[PATCHED]) {
    // Each service method (unary or streaming, either side) returns a cold Observable
    // that starts its call when subscribed: its subscriber gets every reply, error and
    // completion in the context it subscribed in.
    const patched: ServiceMethodFactory = function (this: unknown, grpcClient, methodName) {
      const serviceMethod = createServiceMethod.call(this, grpcClient, methodName);
      if (typeof serviceMethod !== 'function') return serviceMethod;
      return function (this: unknown, ...args: unknown[]): unknown {
        const result: unknown = (serviceMethod as (...callArgs: unknown[]) => unknown).apply(this, args);
        return isObservable(result) ? inSubscriberContext(result) : result;
      };
    };
    patched[PATCHED] = true;
    grpc.prototype.createServiceMethod = patched;
  }
  return true;
}
