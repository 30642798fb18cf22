import type { ExecutionContext } from '@nestjs/common';
import { bound } from '../events/json-safe.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { clientIp } from '../context/client-ip.js';
import { firstValue, HeaderCollector, pathOf, userOf, type TransportCall } from './transport-call.js';
import type { AuditWsRequest } from './transport-request.interface.js';
import type { WsHandshakes } from './ws-handshakes.js';

// @nestjs/websockets' metadata key of @SubscribeMessage, read without depending on the package.
const MESSAGE_METADATA = 'message';

/** The event name: the handler's `@SubscribeMessage` pattern, else the one Nest appends to the arguments. */
function eventOf(ctx: ExecutionContext): string | undefined {
  const declared = Reflect.getMetadata(MESSAGE_METADATA, ctx.getHandler()) as unknown;
  if (typeof declared === 'string') return declared;
  const last = ctx.getArgByIndex<unknown>(ctx.getArgs().length - 1);
  return typeof last === 'string' ? last : undefined;
}

/**
 * Request data of a WebSocket message: method `WS`, route = the event name, path =
 * the handshake's URL path (unless `recordPath` is off), IP and user agent from the handshake (`X-Forwarded-For`
 * honoured as for HTTP, per `trustProxy`), a new request id per message.
 */
export function readWsCall(ctx: ExecutionContext, options: ResolvedAuditOptions, handshakes: WsHandshakes): TransportCall {
  const ws = ctx.switchToWs();
  const client: unknown = ws.getClient();
  const data: unknown = ws.getData();
  const event = eventOf(ctx);
  const handshake = handshakes.of(client);
  const collected = new HeaderCollector(options.maxHeaderLength);
  collected.addAll(handshake?.headers);
  const headers = collected.headers;
  const requestObject: AuditWsRequest = {
    transport: 'ws',
    client,
    data,
    event,
    headers,
    get user() {
      return userOf(client) ?? userOf((client as { data?: unknown } | null)?.data) ?? userOf(handshake?.request);
    },
  };
  return {
    request: {
      ip: clientIp(handshake?.address, handshake?.headers['x-forwarded-for'], options.trustProxy, options.maxHeaderLength),
      userAgent: firstValue(headers['user-agent']),
      method: 'WS',
      route: bound(event, 512),
      path: options.recordPath ? pathOf(handshake?.url) : undefined,
      requestId: uuidv7(),
    },
    requestObject,
  };
}
