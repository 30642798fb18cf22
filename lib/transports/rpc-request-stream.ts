import type { ExecutionContext } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { grpcMethodKind } from '../integrations/grpc-js-method-kind.js';
import { inSubscriberContext } from '../integrations/nest-client-proxy-context.js';

/** What NestJS adds to a gRPC request stream: replays what came before the handler subscribed. */
type RequestStream = Observable<unknown> & { drainBuffer?: () => void };

/**
 * Whether the handler's first argument is a stream of messages: a gRPC `@GrpcStreamMethod`
 * (client or bidirectional streaming). Such a call is one unit of work until its result
 * ends: what the handler writes per message, after a first reply too, is the call's.
 */
function requestsStreamed(ctx: ExecutionContext): boolean {
  const stream = ctx.getArgs<unknown[]>()[0] as Partial<RequestStream> | null | undefined;
  return typeof stream?.subscribe === 'function' && typeof stream.pipe === 'function';
}

/**
 * Whether the call is a stream, of requests or of replies: a gRPC `@GrpcStreamMethod`
 * (client or bidirectional streaming), or a server-streaming `@GrpcMethod`. Such a call is
 * one unit of work until its result ends: its replies go out as they come (a handler that
 * writes as it produces its replies goes on writing after the first), and the unit is
 * stored before the result ends — as an HTTP stream's request is. A unary call's one reply
 * waits for its unit instead.
 */
export function callStreamed(ctx: ExecutionContext): boolean {
  if (requestsStreamed(ctx)) return true;
  const kind = grpcMethodKind(ctx.getArgs<unknown[]>()[2]);
  return kind === 'serverStream' || kind === 'bidi';
}

/**
 * A handler whose first argument is a stream of messages (a gRPC `@GrpcStreamMethod`:
 * client or bidirectional streaming) gets it delivering in the context the handler
 * subscribed in, its unit of work's. The messages arrive from the call's `data` events,
 * in the context of the connection; left as they are, what the handler writes per message
 * would be claimed by no request (a `system` change). The argument is replaced in the call's arguments,
 * which are the handler's; NestJS's `drainBuffer` is kept, so that the stream still
 * completes.
 */
export function requestStreamInHandlerContext(ctx: ExecutionContext): void {
  if (!requestsStreamed(ctx)) return;
  const args = ctx.getArgs<unknown[]>();
  const stream = args[0] as RequestStream;
  const delivered = inSubscriberContext(stream) as RequestStream;
  if (typeof stream.drainBuffer === 'function') {
    Object.defineProperty(delivered, 'drainBuffer', { value: () => stream.drainBuffer!() });
  }
  args[0] = delivered;
}
