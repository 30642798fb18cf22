import type { IncomingMessage } from 'node:http';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { Controller, Injectable, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, NatsRecordBuilder, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway, WsException, type OnGatewayConnection } from '@nestjs/websockets';
import { firstValueFrom } from 'rxjs';
import { io } from 'socket.io-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RpcAdminGuard, RpcTokenGuard } from '../app/order-messages.controller.js';
import { WsAdminGuard } from '../app/orders.gateway.js';
import { USERS } from '../app/token.guard.js';
import { freePort, NATS_URL, natsAvailable } from '../support/broker-probe.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// A message or WebSocket event whose payload is not an object (the order id itself:
// `{ event: 'order.void', data: 7 }`) and that a guard turns away is recorded like one
// with an object payload (PCI DSS 10.2.1.4): one `failure` row for the caller, also when
// several such calls with equal payloads are turned away at once.

const PAYLOADS = [[7], ['7'], [null]] as const;

interface Client {
  user?: { id: number; roles: string[] };
  data?: Record<string, unknown>;
  handshake?: { headers: IncomingMessage['headers'] };
  /** How long `SlowWsAdminGuard` takes for this client's calls (handshake header `x-guard-delay`). */
  guardDelay?: number;
  /** Set by `GatewayGuardProbe` when the app's global guards run for gateway events. */
  globalGuardsRan?: boolean;
}

/** A user by bearer token: the fixture's, or `user-<n>` (id 1000 + n, no roles). */
const userOf = (token: string | undefined): Client['user'] => {
  const numbered = token && /^user-(\d+)$/.exec(token);
  return numbered ? { id: 1000 + Number(numbered[1]), roles: [] } : token ? USERS[token] : undefined;
};

/** Like `WsAdminGuard`, after the client's `x-guard-delay`, naming the user it turns away. */
@Injectable()
class SlowWsAdminGuard implements CanActivate {
  async canActivate(context: ExecutionContext): Promise<boolean> {
    const client = context.switchToWs().getClient<Client>();
    await new Promise((resolve) => setTimeout(resolve, client.guardDelay ?? 0));
    if (!client.user?.roles.includes('admin')) throw new WsException(`Admins only, not user ${client.user?.id}`);
    return true;
  }
}

/** A global guard of the app's that marks the clients of gateway events it sees (NestJS 11 applies none to gateways). */
@Injectable()
class GatewayGuardProbe implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (context.getType() === 'ws') context.switchToWs().getClient<Client>().globalGuardsRan = true;
    return true;
  }
}

/** Admin-only events whose payload is the order id (the path is ws's, or socket.io's). */
@WebSocketGateway({ path: '/ws-void' })
class VoidGateway implements OnGatewayConnection {
  handleConnection(client: Client, request?: IncomingMessage): void {
    const headers = request?.headers ?? client.handshake?.headers;
    client.user = userOf(headers?.authorization?.replace(/^Bearer /, ''));
    client.guardDelay = Number(headers?.['x-guard-delay'] ?? 0);
  }

  @SubscribeMessage('probe')
  probe(@ConnectedSocket() client: Client): { event: string; data: boolean } {
    return { event: 'probe', data: client.globalGuardsRan === true };
  }

  @SubscribeMessage('order.void')
  @UseGuards(WsAdminGuard)
  @Audited('order.voided')
  voidOrder(@MessageBody() id: unknown): { event: string; data: unknown } {
    return { event: 'order.voided', data: id };
  }

  @SubscribeMessage('order.hold')
  @UseGuards(SlowWsAdminGuard)
  @Audited('order.held')
  hold(@MessageBody() id: unknown): { event: string; data: unknown } {
    return { event: 'order.held', data: id };
  }
}

interface Frame {
  event: string;
  data: { message?: string } | unknown;
}

/** A ws or socket.io connection that resolves each call with the next frame it receives. */
interface Connection {
  call(event: string, data: unknown): Promise<Frame>;
  close(): void;
}

type Platform = 'ws' | 'socket.io';

async function connect(platform: Platform, url: string, headers: Record<string, string>): Promise<Connection> {
  const waiting: Array<(frame: Frame) => void> = [];
  const received = (frame: Frame) => waiting.shift()?.(frame);
  const next = () => new Promise<Frame>((resolve) => waiting.push(resolve));
  if (platform === 'ws') {
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/ws-void`, { headers });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.on('message', (raw) => received(JSON.parse(String(raw)) as Frame));
    return {
      call: (event, data) => {
        socket.send(JSON.stringify({ event, data }));
        return next();
      },
      close: () => socket.close(),
    };
  }
  const socket = io(url, { path: '/ws-void', transports: ['websocket'], extraHeaders: headers, reconnection: false });
  await new Promise((resolve, reject) => socket.once('connect', () => resolve(undefined)).once('connect_error', reject));
  socket.onAny((event: string, data: unknown) => received({ event, data }));
  return {
    call: (event, data) => {
      socket.emit(event, data);
      return next();
    },
    close: () => socket.disconnect(),
  };
}

const wsCombos = databases().flatMap((kind) => (['ws', 'socket.io'] as const).map((platform) => [kind, platform] as const));

describe.each(wsCombos)('a WebSocket event a guard turns away, whose payload is not an object, on %s over %s', (kind, platform) => {
  let db: TestDatabase;
  let t: TestApp;
  const connections: Connection[] = [];
  /** Whether the app's global guards run for gateway events (not on NestJS 11: there gateways are not recorded). */
  let gatewaysRecorded = false;
  const open = async (headers: Record<string, string>) => {
    const connection = await connect(platform, t.url, headers);
    connections.push(connection);
    return connection;
  };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      providers: [VoidGateway, WsAdminGuard, SlowWsAdminGuard, { provide: APP_GUARD, useClass: GatewayGuardProbe }],
      configure: (app) => void app.useWebSocketAdapter(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app)),
    });
    const probe = await open({});
    gatewaysRecorded = (await probe.call('probe', null)).data === true;
  });
  afterAll(async () => {
    for (const connection of connections.splice(0)) connection.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const rows = async () => (await t.rows()).map((row) => ({ action: row.action, outcome: row.outcome, actorId: row.actorId, requestId: row.requestId, error: row.error }));

  it.for(PAYLOADS)('payload %j: bob’s denied attempt gives one failure row, as with an object payload', async ([data], ctx) => {
    if (!gatewaysRecorded) ctx.skip();
    const bob = await open({ authorization: 'Bearer bob-token' });
    expect(await bob.call('order.void', data)).toMatchObject({ event: 'exception', data: { message: 'Admins only' } });
    await new Promise((resolve) => setTimeout(resolve, 300)); // not stored late either
    expect((await rows()).map(({ action, outcome, actorId }) => ({ action, outcome, actorId }))).toEqual([{ action: 'order.voided', outcome: 'failure', actorId: '2' }]);
  });

  it.for(PAYLOADS)('payload %j: two users turned away at once, the first one last, each get their own row', async ([data], ctx) => {
    if (!gatewaysRecorded) ctx.skip();
    const first = await open({ authorization: 'Bearer user-1', 'x-guard-delay': '150' });
    const second = await open({ authorization: 'Bearer user-2' });
    const replies = await Promise.all([first.call('order.hold', data), second.call('order.hold', data)]);
    expect(replies.map((reply) => (reply.data as { message?: string }).message)).toEqual(['Admins only, not user 1001', 'Admins only, not user 1002']);
    const stored = await rows();
    expect(stored).toHaveLength(2);
    // Each row's actor is the one its own guard turned away.
    for (const row of stored) expect(row).toMatchObject({ action: 'order.held', outcome: 'failure', error: { message: `Admins only, not user ${row.actorId}` } });
    expect(stored.map((row) => row.actorId).sort()).toEqual(['1001', '1002']);
    expect(stored[0]!.requestId).not.toBe(stored[1]!.requestId);
  });

  it.for(PAYLOADS)('payload %j: the same client turned away twice at once gets two rows', async ([data], ctx) => {
    if (!gatewaysRecorded) ctx.skip();
    const bob = await open({ authorization: 'Bearer bob-token' });
    const replies = await Promise.all([bob.call('order.void', data), bob.call('order.void', data)]);
    for (const reply of replies) expect(reply).toMatchObject({ event: 'exception', data: { message: 'Admins only' } });
    const stored = await rows();
    expect(stored.map(({ action, outcome, actorId }) => ({ action, outcome, actorId }))).toEqual([
      { action: 'order.voided', outcome: 'failure', actorId: '2' },
      { action: 'order.voided', outcome: 'failure', actorId: '2' },
    ]);
    expect(stored[0]!.requestId).not.toBe(stored[1]!.requestId);
  });

  it.for(PAYLOADS)('payload %j: an admin let through while a user is turned away, same payload at once: one row each, their own outcome', async ([data], ctx) => {
    if (!gatewaysRecorded) ctx.skip();
    const alice = await open({ authorization: 'Bearer alice-token', 'x-guard-delay': '150' });
    const bob = await open({ authorization: 'Bearer bob-token' });
    const [allowed, denied] = await Promise.all([alice.call('order.hold', data), bob.call('order.hold', data)]);
    expect(allowed).toEqual({ event: 'order.held', data });
    expect(denied).toMatchObject({ event: 'exception', data: { message: 'Admins only, not user 2' } });
    const stored = await rows();
    expect(stored.map(({ action, outcome, actorId }) => ({ action, outcome, actorId })).sort((a, b) => a.actorId!.localeCompare(b.actorId!))).toEqual([
      { action: 'order.held', outcome: 'success', actorId: '1' },
      { action: 'order.held', outcome: 'failure', actorId: '2' },
    ]);
  });
});

/** An admin-only message whose payload is the order id. */
@Controller()
@UseGuards(RpcTokenGuard, RpcAdminGuard)
class VoidMessagesController {
  static readonly subject = `audit-test-void-${process.pid}-${Math.random().toString(36).slice(2)}`;

  @MessagePattern(VoidMessagesController.subject)
  @Audited('order.voided')
  voidOrder(@Payload() id: unknown): { voided: unknown } {
    return { voided: id };
  }
}

const natsUp = await natsAvailable();

describe.skipIf(!natsUp).each(databases())('a message a guard turns away, whose payload is not an object, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let nats: ClientProxy;
  let tcp: ClientProxy;
  const subject = VoidMessagesController.subject;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const tcpPort = await freePort();
    t = await createTestApp({
      db,
      adapter: 'express',
      controllers: [VoidMessagesController],
      providers: [RpcTokenGuard, RpcAdminGuard],
      configure: async (app) => {
        app.connectMicroservice({ transport: Transport.NATS, options: { servers: [NATS_URL] } }, { inheritAppConfig: true });
        app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
        await app.startAllMicroservices();
      },
    });
    nats = ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [NATS_URL] } });
    tcp = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    await Promise.all([nats.connect(), tcp.connect()]);
  });
  afterAll(async () => {
    await nats?.close();
    await tcp?.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const natsSend = (data: unknown, token: string) => {
    const headers = natsHeaders();
    headers.set('authorization', `Bearer ${token}`);
    return firstValueFrom(nats.send(subject, new NatsRecordBuilder(data).setHeaders(headers).build()));
  };
  const rows = async () => (await t.rows()).map((row) => ({ action: row.action, outcome: row.outcome, actorType: row.actorType, actorId: row.actorId, method: row.method }));

  it.for(PAYLOADS)('NATS, payload %j: bob’s denied message gives one failure row before he gets the error', async ([data]) => {
    await expect(natsSend(data, 'bob-token')).rejects.toMatchObject({ message: 'Admins only' });
    expect(await rows()).toEqual([{ action: 'order.voided', outcome: 'failure', actorType: 'user', actorId: '2', method: 'NATS' }]);
  });

  it.for(PAYLOADS)('NATS, payload %j: an admin and a user at once, same payload: one row each, their own outcome', async ([data]) => {
    const [allowed, denied] = await Promise.allSettled([natsSend(data, 'alice-token'), natsSend(data, 'bob-token')]);
    expect(allowed).toEqual({ status: 'fulfilled', value: { voided: data } });
    expect(denied).toMatchObject({ status: 'rejected', reason: { message: 'Admins only' } });
    const stored = (await rows()).sort((a, b) => a.actorId!.localeCompare(b.actorId!));
    expect(stored).toEqual([
      { action: 'order.voided', outcome: 'success', actorType: 'user', actorId: '1', method: 'NATS' },
      { action: 'order.voided', outcome: 'failure', actorType: 'user', actorId: '2', method: 'NATS' },
    ]);
  });

  // A client proxy refuses to send `null` (InvalidMessageException).
  it.for(PAYLOADS.filter(([data]) => data !== null))('TCP, payload %j: a denied message gives one failure row before the client gets the error', async ([data]) => {
    await expect(firstValueFrom(tcp.send(subject, data))).rejects.toMatchObject({ message: 'Admins only' });
    expect(await rows()).toEqual([{ action: 'order.voided', outcome: 'failure', actorType: 'anonymous', actorId: null, method: 'TCP' }]);
  });
});
