import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';

/** Header values as the module keeps them: lower-case names, bounded string values. */
export type AuditHeaders = Record<string, string | string[] | undefined>;

/**
 * What the `actor` resolver (and `@Audited` options, as `request`) receive for a
 * microservice message (`@MessagePattern` / `@EventPattern`, context type `rpc`).
 * There is no standard place for an RPC caller's identity: map your own in the
 * `actor` option, from the payload, the transport's context or its headers.
 *
 * @example
 * AuditModule.forRoot({
 *   actor: (request) => {
 *     if (request['transport'] === 'rpc') {
 *       const { headers } = request as AuditRpcRequest;
 *       return { type: 'service', id: String(headers['x-caller'] ?? 'unknown') };
 *     }
 *     return request.user ? { type: 'user', id: String(request.user['id']) } : undefined;
 *   },
 * })
 */
export interface AuditRpcRequest extends AuditRequest {
  transport: 'rpc';
  /** The message payload (`ctx.switchToRpc().getData()`). */
  data: unknown;
  /** The transport's context (`NatsContext`, `TcpContext`, `RmqContext`, `KafkaContext`, …). */
  context: unknown;
  /** The handler's message pattern, as recorded in `route`. */
  pattern: string | undefined;
  /**
   * Headers the message carried: NATS headers, RabbitMQ and Kafka message headers,
   * MQTT 5 user properties, gRPC metadata, TCP / Redis packet metadata.
   */
  headers: AuditHeaders;
  /**
   * `context.user` (put there by a guard that checked the message), else `data.user`
   * (a user the calling service forwarded in the payload), read when the event is
   * built. This is what the default resolver reads.
   */
  readonly user: Record<string, unknown> | null | undefined;
}

/**
 * What the `actor` resolver (and `@Audited` options, as `request`) receive for a
 * WebSocket message (`@SubscribeMessage`, context type `ws`).
 */
export interface AuditWsRequest extends AuditRequest {
  transport: 'ws';
  /** The connected client: a `ws` WebSocket or a socket.io `Socket`. */
  client: unknown;
  /** The message payload (`ctx.switchToWs().getData()`). Sent by the client: never an identity. */
  data: unknown;
  /** The event name (`@SubscribeMessage('order.update')`), as recorded in `route`. */
  event: string | undefined;
  /** The headers of the connection's handshake (the HTTP upgrade request), when known. */
  headers: AuditHeaders;
  /**
   * The user the server attached to the connection, read when the event is built:
   * `client.user` (set by a guard or in `handleConnection`), else socket.io's
   * `client.data.user`, else `user` of the handshake request. This is what the
   * default resolver reads. The message payload is never consulted.
   */
  readonly user: Record<string, unknown> | null | undefined;
}
