import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { io } from 'socket.io-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { OrderArchiver } from '../app/jobs.js';
import { Order } from '../app/order.entity.js';
import { OrdersGateway, WsAdminGuard, type OrderCommand } from '../app/orders.gateway.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface Frame {
  event: string;
  data: unknown;
}

/** A client of the fixture's gateway that answers each message with the next frame the server sends. */
abstract class Client {
  private readonly frames: Frame[] = [];
  private readonly waiting: Array<(frame: Frame) => void> = [];

  static open(platform: Platform, url: string, headers: Record<string, string> = {}): Promise<Client> {
    return platform === 'ws' ? WsClient.connect(url, headers) : IoClient.connect(url, headers);
  }

  protected received(frame: Frame): void {
    const next = this.waiting.shift();
    if (next) next(frame);
    else this.frames.push(frame);
  }

  call(event: string, data: OrderCommand): Promise<Frame> {
    this.send(event, data);
    const frame = this.frames.shift();
    return frame ? Promise.resolve(frame) : new Promise((resolve) => this.waiting.push(resolve));
  }

  protected abstract send(event: string, data: OrderCommand): void;
  abstract close(): void;
}

/** A plain WebSocket (`ws`), speaking Nest's `{ event, data }` frames. */
class WsClient extends Client {
  private constructor(private readonly socket: WebSocket) {
    super();
    socket.on('message', (raw) => this.received(JSON.parse(String(raw)) as Frame));
  }

  static connect(url: string, headers: Record<string, string>): Promise<Client> {
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?token=s3cret`, { headers });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new WsClient(socket)));
      socket.once('error', reject);
    });
  }

  protected send(event: string, data: OrderCommand): void {
    this.socket.send(JSON.stringify({ event, data }));
  }

  close(): void {
    this.socket.close();
  }
}

/** A socket.io client over WebSocket, its headers on the upgrade request. */
class IoClient extends Client {
  private constructor(private readonly socket: ReturnType<typeof io>) {
    super();
    socket.onAny((event: string, data: unknown) => this.received({ event, data }));
  }

  static connect(url: string, headers: Record<string, string>): Promise<Client> {
    const socket = io(url, { path: '/ws', transports: ['websocket'], extraHeaders: headers, query: { token: 's3cret' }, reconnection: false });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(new IoClient(socket)));
      socket.once('connect_error', reject);
    });
  }

  protected send(event: string, data: OrderCommand): void {
    this.socket.emit(event, data);
  }

  close(): void {
    this.socket.disconnect();
  }
}

type Platform = 'ws' | 'socket.io';
/** What the handshake's URL path reads on each platform. */
const HANDSHAKE_PATH: Record<Platform, string> = { ws: '/ws', 'socket.io': '/ws/' };

const combos = databases()
  .filter((kind) => kind !== 'mariadb')
  .flatMap((db) => (['ws', 'socket.io'] as const).flatMap((platform) => ADAPTERS.map((adapter) => [db, platform, adapter] as const)));

describe.each(combos)('WebSocket gateway on %s over %s on %s', (kind, platform, adapter) => {
  let db: TestDatabase;
  let t: TestApp;
  const clients: Client[] = [];
  const connect = async (headers: Record<string, string> = {}) => {
    const client = await Client.open(platform, t.url, headers);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      audit: { trustProxy: 'loopback' },
      providers: [OrdersGateway, OrderArchiver, WsAdminGuard],
      configure: (app) => {
        app.useWebSocketAdapter(platform === 'ws' ? new WsAdapter(app) : new IoAdapter(app));
      },
    });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);

  it('an @Audited handler gives one intent row with source ws, the connection’s user, the event and the handshake’s data', async () => {
    const order = await t.seed(() => orders().save({ status: 'new', total: 10 }));
    const client = await connect({ authorization: 'Bearer alice-token', 'user-agent': 'ws-test/1.0' });
    const reply = await client.call('order.update', { id: order.id, status: 'packed' });
    expect(reply).toMatchObject({ event: 'order.updated', data: { id: order.id, status: 'packed' } });

    // No waiting: the reply is sent after the row is stored.
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.action).toBe('order.updated');
    expect(row.kind).toBe('intent');
    expect(row.outcome).toBe('success');
    expect(row.source).toBe('ws');
    expect(row.actorType).toBe('user');
    expect(row.actorId).toBe('1');
    expect(row.actorDisplay).toBe('alice@example.com');
    expect(row.method).toBe('WS');
    expect(row.route).toBe('order.update');
    expect(row.path).toBe(HANDSHAKE_PATH[platform]);
    expect(row.ip).toBe('127.0.0.1');
    expect(row.userAgent).toBe('ws-test/1.0');
    expect(row.requestId).toMatch(UUID_V7);
    expect(row.targetType).toBe('order');
    expect(row.targetId).toBe(String(order.id));
    expect(row.error).toBeNull();
    expect(row.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'packed' } } }]);
    expect(JSON.stringify(row)).not.toContain('s3cret');
  });

  it('each message is its own unit with its own request id; X-Forwarded-For of the handshake is honoured for a trusted proxy', async () => {
    const [a, b] = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    const client = await connect({ authorization: 'Bearer bob-token', 'x-forwarded-for': '203.0.113.9' });
    await client.call('order.update', { id: a!.id, status: 'one' });
    await client.call('order.update', { id: b!.id, status: 'two' });
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatchObject({ source: 'ws', actorId: '2', ip: '203.0.113.9', route: 'order.update' });
    expect(rows[0]!.requestId).not.toBe(rows[1]!.requestId);
    expect(rows.map((row) => row.changes![0]!.id)).toEqual([String(a!.id), String(b!.id)]);
  });

  it('a handler that throws gives one failure row; the client gets the exception frame as usual', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const client = await connect();
    const reply = await client.call('order.pay', { id: order.id });
    expect(reply).toEqual({
      event: 'exception',
      data: { status: 'error', message: `Order ${order.id} is already paid`, cause: { pattern: 'order.pay', data: { id: order.id } } },
    });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.paid', outcome: 'failure', kind: 'intent', source: 'ws', actorType: 'anonymous', route: 'order.pay', changes: [] });
    expect(rows[0]!.error).toEqual({ name: 'WsException' });
  });

  it('a message a guard turns away gives one failure row; the client gets the exception frame', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const client = await connect({ authorization: 'Bearer bob-token' });
    const reply = (await client.call('order.refund', { id: order.id })) as { event: string; data: { message: string } };
    expect(reply.event).toBe('exception');
    expect(reply.data.message).toBe('Admins only');
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.refunded', outcome: 'failure', kind: 'intent', source: 'ws', actorId: '2', route: 'order.refund', changes: [] });
    expect(rows[0]!.error).toEqual({ name: 'WsException', message: 'Admins only' });
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('paid');
  });

  it('an @Audited service method called from a handler keeps source ws; each event has its own changes', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const client = await connect({ authorization: 'Bearer alice-token' });
    expect(await client.call('order.close', { id: order.id })).toEqual({ event: 'order.closed', data: order.id });
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const byAction = Object.fromEntries(rows.map((row) => [row.action, row]));
    const requestId = byAction['order.closed']!.requestId;
    expect(byAction['order.archived']).toMatchObject({ kind: 'intent', source: 'ws', actorId: '1', requestId, method: 'WS', route: 'order.close' });
    expect(byAction['order.archived']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'paid', to: 'archived' } } },
    ]);
    expect(byAction['order.closed']).toMatchObject({ kind: 'intent', source: 'ws', actorId: '1' });
    expect(byAction['order.closed']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'closing' } } },
    ]);
  });

  it('an unaudited handler’s change is one fallback row attributed to ws', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const client = await connect({ authorization: 'Bearer bob-token' });
    await client.call('order.note', { id: order.id, note: 'n1' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.updated', kind: 'change', source: 'ws', actorId: '2', method: 'WS', route: 'order.note', targetId: String(order.id) });
  });

  it('clients of different users at once: every row names its own actor', async () => {
    const list = await t.seed(() => orders().save(Array.from({ length: 10 }, () => ({ status: 'new' }))));
    const alice = await connect({ authorization: 'Bearer alice-token' });
    const bob = await connect({ authorization: 'Bearer bob-token' });
    await Promise.all(list.map((order, i) => (i % 2 ? alice : bob).call('order.update', { id: order.id, status: `s${i}` })));
    const rows = await t.rows();
    expect(rows.filter((row) => row.kind === 'intent')).toHaveLength(10);
    list.forEach((order, i) => {
      for (const row of rows.filter((candidate) => candidate.targetId === String(order.id))) {
        expect(row).toMatchObject({ actorId: i % 2 ? '1' : '2', source: 'ws' });
      }
    });
  });
});
