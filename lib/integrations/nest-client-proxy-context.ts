import { AsyncResource } from 'node:async_hooks';
import { Observable } from 'rxjs';

/**
 * Patches: `send` and `emit` on `ClientProxy.prototype` (`@nestjs/microservices`, the base
 * class of the TCP, Redis, NATS, MQTT, RabbitMQ and Kafka clients),
 * `ClientGrpcProxy.prototype.createServiceMethod` (which makes each method of the service
 * `ClientGrpc.getService()` returns), and `ClientGrpcProxy.prototype.getClientByServiceName`
 * (which gives the `@grpc/grpc-js` client itself), only when the package is installed
 * (loaded with a dynamic `import()`).
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
 * The `@grpc/grpc-js` client `getClientByServiceName()` gives calls back the same way: a
 * call made while the channel connects gets its callback, and its call object's events
 * ('metadata', 'data', 'end', 'error', 'status'), in the context of the first caller, and
 * a server stream's 'end' and 'status' come in that context even once it is connected.
 * No public hook of Nest or grpc-js serves: grpc-js's interceptors are set when the
 * client is made (by Nest, from options the app also owns), a call's own interceptors
 * replace the client's, and the service methods of a grpc-js client call `Client`'s
 * request methods directly (not through the instance). Each service method of the client
 * (`client.Quote(…)`, and its lower-camel alias) is wrapped for the instance (on a
 * prototype of its own, so it lists its methods as before): an `AsyncResource` taken
 * when it is called runs its callback and every event its call object emits, in the
 * caller's context. Arguments, metadata, options, the call object returned, values,
 * errors, cancellation and timing are grpc-js's own.
 *
 * The patch is made at the module's init, after every provider: the clients a
 * `ClientGrpc` provider made before (taken in a constructor or a factory) are wrapped
 * then, from its `clients`.
 *
 * Tested with NestJS 11 and 12 and @grpc/grpc-js 1.14 (`test/unit/integrations.spec.ts`
 * fails when one of the methods is gone, a transport's client no longer uses
 * `ClientProxy`'s, `getService()` no longer makes its methods with `createServiceMethod`,
 * or a grpc-js service client no longer lists its methods in its class's `service`).
 */

type ClientMethod = ((this: unknown, pattern: unknown, data: unknown) => unknown) & { [PATCHED]?: true };
type ClientProxyClass = { prototype: { send: ClientMethod; emit: ClientMethod } };
type ServiceMethodFactory = ((this: unknown, client: unknown, methodName: string) => unknown) & { [PATCHED]?: true };
type ClientByServiceName = ((this: unknown, name: string) => unknown) & { [PATCHED]?: true };
type ClientGrpcProxyClass = { prototype: { createServiceMethod: ServiceMethodFactory; getClientByServiceName: ClientByServiceName } };
/** What a `@grpc/grpc-js` service client's class lists of each method (`ServiceDefinition`). */
type GrpcMethodDefinitions = Record<string, { originalName?: string } | undefined>;
type GrpcCallMethod = (this: unknown, ...args: unknown[]) => unknown;

const PATCHED = Symbol.for('nestjs-system-audit:client-proxy-context');
const METHODS = ['send', 'emit'] as const;
const GRPC_METHODS = ['createServiceMethod', 'getClientByServiceName'] as const;

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
 * @throws Error naming the method when it is installed but has no `createServiceMethod` or
 * `getClientByServiceName` any more.
 */
export async function loadClientGrpcProxy(): Promise<ClientGrpcProxyClass | undefined> {
  let client: ClientGrpcProxyClass;
  try {
    client = (await import('@nestjs/microservices')).ClientGrpcProxy as unknown as ClientGrpcProxyClass;
  } catch {
    return undefined; // @nestjs/microservices is not installed
  }
  for (const method of GRPC_METHODS) {
    if (typeof client?.prototype?.[method] !== 'function') {
      throw new Error(`nestjs-system-audit: @nestjs/microservices ClientGrpcProxy.prototype.${method} not found; this NestJS version is not supported`);
    }
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
 * Wraps each service method of a `@grpc/grpc-js` service client, for this instance (once
 * per client): the callback of a call (its first function argument) and the events its
 * call object emits run in the async context the method was called in. The methods are
 * those its class lists in `service`, under their name and their `originalName` (one
 * wrapper for both, which keeps the method's attributes: `path`, `requestStream`,
 * `responseStream`…). The wrappers sit on a prototype of the instance's own, between it
 * and its class's, as grpc-js's methods do on its class's: inherited and enumerable
 * (`for…in` lists them; `Object.keys()` and own properties are unchanged; `instanceof`
 * holds). Anything else is left as it is.
 */
function answerGrpcCallsInCallerContext(client: unknown): void {
  if (typeof client !== 'object' || client === null || (client as { [PATCHED]?: true })[PATCHED]) return;
  const target = client as Record<string, unknown>;
  const service = (client.constructor as { service?: GrpcMethodDefinitions } | undefined)?.service;
  const wrappers: PropertyDescriptorMap = {};
  for (const [name, definition] of Object.entries(service ?? {})) {
    const method = target[name];
    if (typeof method !== 'function') continue;
    const wrapped = Object.assign(callerContextCall(method as GrpcCallMethod), method);
    for (const key of new Set([name, definition?.originalName ?? name])) {
      if (target[key] === method) wrappers[key] = { value: wrapped, writable: true, configurable: true, enumerable: true };
    }
  }
  Object.setPrototypeOf(client, Object.create(Object.getPrototypeOf(client) as object | null, wrappers));
  Object.defineProperty(client, PATCHED, { value: true });
}

/** `method`, whose callback and call object's events run in the context it is called in. */
function callerContextCall(method: GrpcCallMethod): GrpcCallMethod {
  return function (this: unknown, ...args: unknown[]): unknown {
    const scope = new AsyncResource('nestjs-system-audit:grpc-call');
    // grpc-js takes the first function it is given as the callback, wherever more follow.
    const at = args.findIndex((arg) => typeof arg === 'function');
    const callback = args[at] as GrpcCallMethod | undefined;
    if (callback) {
      args[at] = function (this: unknown, ...results: unknown[]): unknown {
        return scope.runInAsyncScope(callback, this, ...results);
      };
    }
    const call = method.apply(this, args);
    const emit = (call as { emit?: unknown } | null | undefined)?.emit;
    if (typeof emit === 'function') {
      Object.defineProperty(call, 'emit', {
        value: function (this: unknown, ...event: unknown[]): unknown {
          return scope.runInAsyncScope(emit as GrpcCallMethod, this, ...event);
        },
        writable: true,
        configurable: true,
        enumerable: false,
      });
    }
    return call;
  };
}

/**
 * Wraps, as `getClientByServiceName` now does, the `@grpc/grpc-js` clients the
 * `ClientGrpcProxy` instances among `instances` made before it was patched: a client
 * taken in a constructor or a provider's factory (before the module's init) is the
 * object its holder keeps calling, and Nest gives the same one again from its `clients`.
 */
export async function answerCallsOfGrpcClientsMadeBefore(instances: Iterable<unknown>): Promise<void> {
  const grpc = (await loadClientGrpcProxy()) as unknown as (abstract new (...args: never[]) => unknown) | undefined;
  if (!grpc) return;
  for (const instance of instances) {
    let clients: unknown;
    try {
      // A provider may throw when looked at (nestjs-cls's proxy providers outside a CLS
      // context, an app's own Proxy): it is not a ClientGrpcProxy.
      if (!(instance instanceof grpc)) continue;
      clients = (instance as { clients?: unknown }).clients;
    } catch {
      continue;
    }
    if (clients instanceof Map) for (const client of clients.values()) answerGrpcCallsInCallerContext(client);
  }
}

/**
 * Patches `ClientProxy.prototype.send` and `emit`, and
 * `ClientGrpcProxy.prototype.createServiceMethod` and `getClientByServiceName` (once per
 * process). Resolves with true when `@nestjs/microservices` is installed (patched now or
 * before), false when it is not.
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
  const getClientByServiceName = grpc?.prototype.getClientByServiceName;
  if (grpc && getClientByServiceName && !getClientByServiceName[PATCHED]) {
    // The grpc-js client (one per service, made on first use; getService() takes its own
    // from here too): its calls answer in their caller's context.
    const patched: ClientByServiceName = function (this: unknown, name) {
      const grpcClient = getClientByServiceName.call(this, name);
      answerGrpcCallsInCallerContext(grpcClient);
      return grpcClient;
    };
    patched[PATCHED] = true;
    grpc.prototype.getClientByServiceName = patched;
  }
  return true;
}
