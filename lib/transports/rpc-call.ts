import { isIP } from 'node:net';
import type { ExecutionContext } from '@nestjs/common';
import { bound } from '../events/json-safe.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { normaliseIp } from '../context/client-ip.js';
import { resolveRequestId } from '../context/request-info.js';
import { callGetter, firstValue, HeaderCollector, userOf, type TransportCall } from './transport-call.js';
import type { AuditRpcRequest } from './transport-request.interface.js';

// @nestjs/microservices' metadata keys, read without depending on the package.
const PATTERN_METADATA = 'microservices:pattern';
const TRANSPORT_METADATA = 'microservices:transport';

/** Transport names by the class of the RPC context Nest hands to the handler. */
const CONTEXT_TRANSPORTS: Record<string, string> = {
  TcpContext: 'TCP',
  RedisContext: 'REDIS',
  NatsContext: 'NATS',
  MqttContext: 'MQTT',
  RmqContext: 'RMQ',
  KafkaContext: 'KAFKA',
  Metadata: 'GRPC', // gRPC handlers get the call's Metadata as their context
};

/** `Transport` enum values of @nestjs/microservices, for `@MessagePattern(pattern, transport)`. */
const TRANSPORT_IDS = ['TCP', 'REDIS', 'NATS', 'MQTT', 'GRPC', 'RMQ', 'KAFKA'];

/** A pattern as text: strings as they are, objects as JSON with sorted keys (as Nest routes them). */
function patternText(pattern: unknown): string | undefined {
  if (typeof pattern === 'string') return pattern;
  if (typeof pattern === 'number') return String(pattern);
  if (!pattern || typeof pattern !== 'object') return undefined;
  try {
    return JSON.stringify(pattern, (_key, value: unknown) =>
      value && typeof value === 'object' && !Array.isArray(value)
        ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
        : value,
    );
  } catch {
    return undefined;
  }
}

/** The subject / channel / topic / pattern the message arrived on, as the transport reports it. */
function arrivedOn(context: unknown): string | undefined {
  for (const getter of ['getSubject', 'getChannel', 'getTopic', 'getPattern']) {
    const value = callGetter(context, getter);
    if (typeof value === 'string') return value;
  }
  return undefined;
}

/** The handler's declared pattern: the only one, else the one the message arrived on. */
function declaredPattern(handler: unknown, concrete: string | undefined): string | undefined {
  const patterns = typeof handler === 'function' ? (Reflect.getMetadata(PATTERN_METADATA, handler) as unknown) : undefined;
  const texts = (Array.isArray(patterns) ? patterns : patterns === undefined ? [] : [patterns]).map(patternText);
  if (texts.length === 1) return texts[0];
  return texts.find((text) => text === concrete) ?? concrete ?? texts[0];
}

function transportName(handler: unknown, context: unknown): string {
  const declared = typeof handler === 'function' ? (Reflect.getMetadata(TRANSPORT_METADATA, handler) as unknown) : undefined;
  if (typeof declared === 'number' && TRANSPORT_IDS[declared]) return TRANSPORT_IDS[declared];
  const name = (context as { constructor?: { name?: unknown } } | null | undefined)?.constructor?.name;
  if (typeof name === 'string') {
    const known = CONTEXT_TRANSPORTS[name];
    if (known) return known;
    // A custom transport's context, by convention `<Name>Context`.
    if (name.endsWith('Context') && name.length > 7 && name !== 'BaseRpcContext') return name.slice(0, -7).toUpperCase().slice(0, 16);
  }
  return 'RPC';
}

/** Headers the transport carried, wherever it keeps them. */
function headersOf(context: unknown, maxLength: number): HeaderCollector {
  const headers = new HeaderCollector(maxLength);
  // NATS: MsgHdrs, with keys() and get().
  const nats = callGetter(context, 'getHeaders') as { keys?: () => Iterable<string>; get?: (key: string) => unknown } | undefined;
  if (nats && typeof nats.keys === 'function' && typeof nats.get === 'function') {
    for (const key of nats.keys()) headers.add(key, nats.get(key));
  }
  // TCP, Redis: the metadata a client's dispatch hook put on the packet.
  headers.addAll(callGetter(context, 'getMetadata'));
  // RabbitMQ: message.properties.headers; Kafka: message.headers.
  const message = callGetter(context, 'getMessage') as { properties?: { headers?: unknown }; headers?: unknown } | undefined;
  headers.addAll(message?.properties?.headers);
  headers.addAll(message?.headers);
  // MQTT 5: user properties.
  headers.addAll((callGetter(context, 'getPacket') as { properties?: { userProperties?: unknown } } | undefined)?.properties?.userProperties);
  // gRPC: Metadata#getMap().
  headers.addAll(callGetter(context, 'getMap'));
  return headers;
}

/** The peer address of a TCP transport's socket. */
function tcpPeer(context: unknown): string | undefined {
  const socket = callGetter(context, 'getSocketRef') as { netSocket?: { remoteAddress?: unknown } } | undefined;
  const address = socket?.netSocket?.remoteAddress;
  return typeof address === 'string' ? normaliseIp(address) : undefined;
}

/**
 * A gRPC handler's call (its third argument, beside the data and the `Metadata`), when it
 * is one: @grpc/grpc-js' server calls have `getPath()` and `getPeer()`.
 */
interface GrpcCall {
  getPath(): unknown;
  getPeer(): unknown;
}

function grpcCallOf(ctx: ExecutionContext): GrpcCall | undefined {
  const call = ctx.getArgs().length > 2 ? (ctx.getArgByIndex(2) as Partial<GrpcCall> | null | undefined) : undefined;
  return typeof call?.getPath === 'function' && typeof call.getPeer === 'function' ? (call as GrpcCall) : undefined;
}

/**
 * The address of a gRPC peer: @grpc/grpc-js writes it as the socket's address and port
 * (`127.0.0.1:50051`, `::1:50051`), older versions as `ipv4:127.0.0.1:50051` or
 * `ipv6:[::1]:50051`. Nothing for a Unix socket's path or `unknown`.
 */
function grpcPeer(call: GrpcCall): string | undefined {
  const peer = safely(() => call.getPeer());
  if (typeof peer !== 'string') return undefined;
  const text = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text)?.[1];
  const ip = bracketed ?? [text.replace(/:\d+$/, ''), text].find((candidate) => isIP(candidate) !== 0);
  return ip && isIP(ip) ? normaliseIp(ip) : undefined;
}

/** `fn()`, or `undefined` when it throws (a getter of a call that has ended). */
function safely(fn: () => unknown): unknown {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/**
 * Request data of a microservice message: method = the transport (`NATS`, `TCP`, …),
 * route = the handler's pattern, path = the subject / channel / topic it arrived on,
 * request id from the transport's headers (`x-request-id` by default) or generated.
 */
export function readRpcCall(ctx: ExecutionContext, options: ResolvedAuditOptions): TransportCall {
  const rpc = ctx.switchToRpc();
  const data: unknown = rpc.getData();
  const context: unknown = rpc.getContext();
  const handler = ctx.getHandler();
  const concrete = arrivedOn(context);
  const pattern = declaredPattern(handler, concrete);
  const { headers } = headersOf(context, options.maxHeaderLength);
  const method = transportName(handler, context);
  const grpc = method === 'GRPC' ? grpcCallOf(ctx) : undefined;
  const grpcPath = grpc ? safely(() => grpc.getPath()) : undefined;
  const path = concrete ?? (typeof grpcPath === 'string' ? grpcPath : undefined);
  const requestObject: AuditRpcRequest = {
    transport: 'rpc',
    data,
    context,
    pattern,
    headers,
    get user() {
      return userOf(context) ?? userOf(data);
    },
  };
  return {
    request: {
      ip: grpc ? grpcPeer(grpc) : tcpPeer(context),
      method,
      route: bound(pattern, 512),
      path: options.recordPath ? bound(path, 2048) : undefined,
      requestId: resolveRequestId(firstValue(headers[options.requestIdHeader])),
    },
    requestObject,
  };
}
