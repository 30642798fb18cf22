import 'reflect-metadata';
import { Metadata } from '@grpc/grpc-js';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import {
  EventPattern,
  KafkaContext,
  MessagePattern,
  MqttContext,
  NatsContext,
  RedisContext,
  RmqContext,
  TcpContext,
  Transport,
} from '@nestjs/microservices';
import { describe, expect, it } from 'vitest';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { readRpcCall } from '../../lib/transports/rpc-call.js';
import type { AuditRpcRequest } from '../../lib/index.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

class Handlers {
  @MessagePattern('orders.*')
  wildcard(): void {}

  @MessagePattern({ service: 'orders', cmd: 'update' })
  object(): void {}

  @MessagePattern(['orders.a', 'orders.b'])
  several(): void {}

  @EventPattern('order.shipped', Transport.KAFKA)
  kafka(_data: unknown): void {}
}

/** The execution context Nest builds for a message handler: `[data, rpcContext]`, type `rpc`. */
function rpcCall(handler: keyof Handlers, data: unknown, context: unknown, options = {}) {
  const host = new ExecutionContextHost([data, context], Handlers, Handlers.prototype[handler]);
  host.setType('rpc');
  return readRpcCall(host, resolveAuditOptions(options));
}

describe('readRpcCall: request data of a message, for each transport', () => {
  it('NATS: transport, declared pattern as route, subject as path, request id and headers from NATS headers', () => {
    const headers = natsHeaders();
    headers.set('X-Request-Id', 'n-1');
    headers.set('x-reason', 'scan');
    const call = rpcCall('wildcard', { id: 1 }, new NatsContext(['orders.42', headers]));
    expect(call.request).toEqual({ ip: undefined, method: 'NATS', route: 'orders.*', path: 'orders.42', requestId: 'n-1' });
    expect((call.requestObject as AuditRpcRequest).headers).toEqual({ 'x-request-id': 'n-1', 'x-reason': 'scan' });
  });

  // Packet metadata (and TcpContext.getMetadata) arrived with NestJS 12.
  it.skipIf(typeof (TcpContext.prototype as { getMetadata?: unknown }).getMetadata !== 'function')(
    'TCP: an object pattern as JSON with sorted keys; request id from the packet metadata',
    () => {
    const pattern = '{"cmd":"update","service":"orders"}';
    const call = rpcCall('object', {}, new TcpContext([{} as never, pattern, { 'x-request-id': 't-1' }] as never));
    expect(call.request).toMatchObject({ method: 'TCP', route: pattern, path: pattern, requestId: 't-1' });
    },
  );

  it('Redis: the channel it arrived on picks the route among several patterns', () => {
    const call = rpcCall('several', {}, new RedisContext(['orders.b', undefined]));
    expect(call.request).toMatchObject({ method: 'REDIS', route: 'orders.b', path: 'orders.b' });
    expect(call.request.requestId).toMatch(UUID_V7);
  });

  it('RabbitMQ: request id from the message properties’ headers', () => {
    const message = { content: Buffer.from('{}'), properties: { headers: { 'x-request-id': 'r-1' } } };
    const call = rpcCall('several', {}, new RmqContext([message, {}, 'orders.a']));
    expect(call.request).toMatchObject({ method: 'RMQ', route: 'orders.a', path: 'orders.a', requestId: 'r-1' });
  });

  it('Kafka: the transport named in the decorator, request id from a buffer header, topic as path', () => {
    const message = { value: '{}', headers: { 'x-request-id': Buffer.from('k-1') } };
    const call = rpcCall('kafka', {}, new KafkaContext([message as never, 0, 'order.shipped', {} as never, async () => {}, {} as never]));
    expect(call.request).toMatchObject({ method: 'KAFKA', route: 'order.shipped', path: 'order.shipped', requestId: 'k-1' });
  });

  it('MQTT 5: request id from the user properties', () => {
    const packet = { properties: { userProperties: { 'x-request-id': 'm-1' } } };
    const call = rpcCall('wildcard', {}, new MqttContext(['orders/7', packet as never]));
    expect(call.request).toMatchObject({ method: 'MQTT', route: 'orders.*', path: 'orders/7', requestId: 'm-1' });
  });

  it('an invalid or oversized request id is replaced; header values are bounded', () => {
    const headers = natsHeaders();
    headers.set('x-request-id', '<script>');
    headers.set('x-long', 'v'.repeat(5000));
    const call = rpcCall('wildcard', {}, new NatsContext(['orders.1', headers]), { maxHeaderLength: 100 });
    expect(call.request.requestId).toMatch(UUID_V7);
    expect((call.requestObject as AuditRpcRequest).headers['x-long']).toHaveLength(100);
  });

  it('the actor resolver’s request: user from the context first, then from the payload, read when asked', () => {
    const data: { id: number; user?: unknown } = { id: 1, user: { id: 'payload' } };
    const context = new NatsContext(['orders.1', undefined as never]) as NatsContext & { user?: unknown };
    const request = rpcCall('wildcard', data, context).requestObject as AuditRpcRequest;
    expect(request).toMatchObject({ transport: 'rpc', data, context, pattern: 'orders.*' });
    expect(request.user).toEqual({ id: 'payload' });
    context.user = { id: 'guard' };
    expect(request.user).toEqual({ id: 'guard' });
  });

  it('the request id header option is honoured', () => {
    const headers = natsHeaders();
    headers.set('x-correlation-id', 'c-1');
    const call = rpcCall('wildcard', {}, new NatsContext(['orders.1', headers]), { requestIdHeader: 'X-Correlation-Id' });
    expect(call.request.requestId).toBe('c-1');
  });
});

describe('readRpcCall: a gRPC call', () => {
  class GrpcHandlers {
    @MessagePattern({ service: 'OrdersService', rpc: 'UpdateOrder', streaming: 'no_stream' }, Transport.GRPC)
    update(): void {}
  }
  /** `[data, Metadata, call]`, as Nest hands them to a @GrpcMethod handler; the call as @grpc/grpc-js's server calls answer. */
  const grpcCall = (peer: unknown, options = {}) => {
    const metadata = new Metadata();
    metadata.set('x-request-id', 'g-1');
    const call = { getPath: () => '/shop.OrdersService/UpdateOrder', getPeer: () => peer };
    const host = new ExecutionContextHost([{ id: 1 }, metadata, call], GrpcHandlers, GrpcHandlers.prototype.update);
    host.setType('rpc');
    return readRpcCall(host, resolveAuditOptions(options)).request;
  };

  it('the method path as path, the peer address as ip, the request id from the metadata', () => {
    expect(grpcCall('127.0.0.1:50051')).toEqual({
      ip: '127.0.0.1',
      method: 'GRPC',
      route: '{"rpc":"UpdateOrder","service":"OrdersService","streaming":"no_stream"}',
      path: '/shop.OrdersService/UpdateOrder',
      requestId: 'g-1',
    });
    expect(grpcCall('127.0.0.1:50051', { recordPath: false }).path).toBeUndefined();
  });

  it.each([
    ['::1:50051', '::1'],
    ['::ffff:10.0.0.7:443', '10.0.0.7'],
    ['2001:db8::5:1234', '2001:db8::5'],
    ['ipv4:10.1.2.3:9', '10.1.2.3'],
    ['ipv6:[::1]:9', '::1'],
    ['10.1.2.3', '10.1.2.3'],
    ['unix:/run/app.sock', undefined],
    ['unknown', undefined],
    [undefined, undefined],
  ])('peer %j: ip %j', (peer, ip) => {
    expect(grpcCall(peer).ip).toBe(ip);
  });
});
