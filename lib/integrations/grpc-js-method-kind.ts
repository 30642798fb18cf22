/**
 * Whether a gRPC call's replies are a stream, read from `@grpc/grpc-js` internals.
 *
 * NestJS hands a `@GrpcMethod` handler the call object of `@grpc/grpc-js` as its third
 * argument. For a unary call and a server-streaming one that object is of the same class
 * (grpc-js gives unary calls a writable stream too), and NestJS's route pattern says
 * `no_stream` for both; only the method's handler, which grpc-js keeps on the call it
 * wraps, knows the method's kind: `unary`, `serverStream`, `clientStream` or `bidi`.
 *
 * Read, not patched: the wrapping call is `call.call`, through any server interceptors
 * (each a `nextCall` around the next) down to the one holding `handler`. When that shape
 * is not found (another gRPC library, another version), the kind is unknown and the call
 * is taken for one reply. test/e2e/grpc.e2e.spec.ts's server-streaming test fails when it
 * changes.
 */
export type GrpcMethodKind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';

const KINDS: ReadonlySet<string> = new Set<GrpcMethodKind>(['unary', 'serverStream', 'clientStream', 'bidi']);

/** How deep server interceptors may wrap the call before the one holding the handler (each wraps the next). */
const MAX_WRAPPERS = 32;

/** The kind of the gRPC method of `call` (a handler's third argument), when grpc-js says it. */
export function grpcMethodKind(call: unknown): GrpcMethodKind | undefined {
  let inner = (call as { call?: unknown } | null | undefined)?.call;
  for (let depth = 0; depth <= MAX_WRAPPERS && inner !== null && typeof inner === 'object'; depth++) {
    const handler = (inner as { handler?: unknown }).handler;
    if (handler !== null && typeof handler === 'object') {
      const type = (handler as { type?: unknown }).type;
      return typeof type === 'string' && KINDS.has(type) ? (type as GrpcMethodKind) : undefined;
    }
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}
