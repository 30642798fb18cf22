import { connect, type Socket } from 'node:net';
import { Controller, Param, Post, Res, Sse, type MessageEvent } from '@nestjs/common';
import { interval, map, take, type Observable } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { CLOSE_DELIMITED_HOLD_BYTES, CLOSE_DELIMITED_HOLD_TOTAL_BYTES, closeDelimitedBytesHeld } from '../../lib/middleware/held-response.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/** Each response's body: under the bound of one response, so each alone is held back whole. */
const BODY_BYTES = 1_000_000;
/** Responses at once: together past the process-wide bound. */
const RESPONSES = Math.ceil(CLOSE_DELIMITED_HOLD_TOTAL_BYTES / BODY_BYTES) + 6;

/** Enough of Node's response (Express's response, Fastify's `reply.raw`) to write a body by hand. */
interface RawResponse {
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  write(chunk: string | Buffer): unknown;
  end(chunk?: string): unknown;
  flushHeaders(): unknown;
  destroy(): unknown;
}
type AnyResponse = { raw?: RawResponse } & RawResponse;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Handlers wait here, their body written, until the test lets them end. */
let gate: { promise: Promise<void>; open(): void };
const newGate = () => {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  gate = { promise, open };
};

@Controller('http10-bound')
class BigBodiesController {
  /** An `@Res()` handler that writes a body of BODY_BYTES, then ends it once the gate opens. */
  @Post(':n')
  @Audited('report.sent')
  async send(@Param('n') n: string, @Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'application/octet-stream' });
    raw.write(Buffer.alloc(BODY_BYTES, n.charCodeAt(0)));
    void gate.promise.then(() => raw.end());
  }
}

/** Responses that end or go away every way a response can, each after a held write. */
@Controller('acct')
class AccountingController {
  @Post('throws')
  @Audited('acct.throws')
  async throws(@Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('part 1\n');
    await sleep(10);
    throw new Error('source went away');
  }

  @Post('gated')
  @Audited('acct.gated')
  async gated(@Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('held body\n');
    void gate.promise.then(() => raw.end());
  }

  @Post('ends-twice')
  @Audited('acct.twice')
  async twice(@Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('once\n');
    raw.end();
    raw.end();
  }

  @Post('flush')
  @Audited('acct.flush')
  async flush(@Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('before flush\n');
    raw.flushHeaders();
    raw.write('after flush\n');
    raw.end();
  }

  @Post('destroys')
  @Audited('acct.destroys')
  async destroys(@Res() response: AnyResponse): Promise<void> {
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('cut\n');
    await sleep(10);
    raw.destroy();
  }

  @Sse('sse')
  @Audited('acct.sse')
  sse(): Observable<MessageEvent> {
    return interval(20).pipe(
      take(3),
      map((i) => ({ data: `tick-${i}` })),
    );
  }
}

interface Client {
  socket: Socket;
  /** Bytes of the body received so far. */
  received: () => number;
  /** Resolves with the bytes of the body received once the connection ends. */
  done: Promise<number>;
}

/** Every client a test opened: the next test starts without them. */
const opened: Client[] = [];

/** An HTTP/1.0 request on a socket of its own (the body ends with the connection). */
function http10(t: TestApp, path: string, requestId: string): Client {
  const { hostname, port } = new URL(t.url);
  const socket = connect(Number(port), hostname);
  let head = '';
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    if (head.endsWith('\r\n\r\n')) return void (received += chunk.length);
    const text = head + chunk.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) return void (head = text);
    head = text.slice(0, end + 4);
    received += text.length - head.length;
  });
  const done = new Promise<number>((resolve) => socket.on('close', () => resolve(received)));
  socket.on('error', () => undefined);
  socket.write(`POST ${path} HTTP/1.0\r\nhost: ${hostname}\r\ncontent-length: 0\r\nx-request-id: ${requestId}\r\n\r\n`);
  const client = { socket, received: () => received, done };
  opened.push(client);
  return client;
}

/** An HTTP/1.0 request on a socket of its own: what the client got, and whether the connection was reset. */
function http10Text(t: TestApp, method: string, path: string, id: string): { socket: ReturnType<typeof connect>; done: Promise<{ text: string; reset: boolean }> } {
  const { hostname, port } = new URL(t.url);
  const socket = connect(Number(port), hostname);
  let text = '';
  let reset = false;
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => (reset = true));
  const done = new Promise<{ text: string; reset: boolean }>((resolve) => socket.on('close', () => resolve({ text, reset })));
  socket.write(`${method} ${path} HTTP/1.0\r\nhost: ${hostname}\r\ncontent-length: 0\r\nx-request-id: ${id}\r\n\r\n`);
  return { socket, done };
}

const statusOf = (text: string) => text.slice(0, text.indexOf('\r\n'));

/**
 * A body that ends with the connection (an HTTP/1.0 answer without a declared length) is
 * held back until its events are stored, up to a mebibyte per response: the bytes all
 * responses hold at once are bounded too, so that many such clients at once cannot make
 * the process hold a mebibyte each. Past that bound a body goes out as it is written.
 * Every way a response ends or goes away lets its bytes go (the count back to nothing),
 * and what the client gets is what it would without the count.
 */
describe.each(ADAPTERS)('bodies held back for HTTP/1.0 clients, all responses together, over %s', (adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter, controllers: [BigBodiesController, AccountingController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    newGate();
    await t.clearAudit();
  });
  afterEach(async () => {
    gate.open();
    for (const client of opened.splice(0)) client.socket.destroy();
  });

  it('past the process-wide bound, bodies go out as they are written; each response is whole and recorded; nothing stays counted', async () => {
    expect(BODY_BYTES).toBeLessThan(CLOSE_DELIMITED_HOLD_BYTES);
    const clients = Array.from({ length: RESPONSES }, (_, i) => http10(t, `/http10-bound/${String.fromCharCode(97 + (i % 26))}`, `bound-${adapter}-${i}`));
    // Every handler has written its body: the held ones' bytes stay in the process, the others' reach their client.
    await expect
      .poll(() => closeDelimitedBytesHeld() + clients.reduce((sum, client) => sum + client.received(), 0), { timeout: 20_000, interval: 50 })
      .toBeGreaterThanOrEqual(RESPONSES * BODY_BYTES);
    const held = closeDelimitedBytesHeld();
    expect(held, `${held} bytes held back at once`).toBeLessThanOrEqual(CLOSE_DELIMITED_HOLD_TOTAL_BYTES);
    const flowing = clients.filter((client) => client.received() === BODY_BYTES);
    expect(flowing.length, 'responses whose body reached the client before its end').toBeGreaterThanOrEqual(RESPONSES - Math.floor(CLOSE_DELIMITED_HOLD_TOTAL_BYTES / BODY_BYTES));
    gate.open();
    const sizes = await Promise.all(clients.map((client) => client.done));
    expect(sizes).toEqual(Array(RESPONSES).fill(BODY_BYTES));
    await expect.poll(async () => (await t.rows()).filter((row) => row.action === 'report.sent' && row.outcome === 'success').length, { timeout: 10_000 }).toBe(RESPONSES);
    expect(closeDelimitedBytesHeld()).toBe(0);
  }, 60_000);

  it('a client that leaves while its body is held back: the bytes are let go', async () => {
    const clients = Array.from({ length: 3 }, (_, i) => http10(t, '/http10-bound/z', `left-${adapter}-${i}`));
    await expect.poll(() => closeDelimitedBytesHeld(), { timeout: 10_000, interval: 20 }).toBe(3 * BODY_BYTES);
    for (const client of clients) client.socket.destroy();
    await expect.poll(() => closeDelimitedBytesHeld(), { timeout: 10_000, interval: 20 }).toBe(0);
    gate.open();
    await Promise.all(clients.map((client) => client.done));
  }, 30_000);

  const settled = () => expect.poll(() => closeDelimitedBytesHeld(), { timeout: 5_000, interval: 20 }).toBe(0);

  it('an @Res() handler that throws after writing', async () => {
    const seen = await http10Text(t, 'POST', '/acct/throws', `throws-${adapter}`).done;
    expect(statusOf(seen.text)).toContain(' 500 ');
    expect(seen.text).not.toContain('part 1');
    await settled();
  });

  it('fail-closed: storage fails while the body is held', async () => {
    await moveAuditLog(t.dataSource, db, true);
    try {
      const client = http10Text(t, 'POST', '/acct/gated', `fc-${adapter}`);
      await expect.poll(() => closeDelimitedBytesHeld(), { timeout: 5_000, interval: 20 }).toBeGreaterThan(0);
      gate.open();
      const seen = await client.done;
      expect(statusOf(seen.text)).toContain(' 500 ');
      expect(seen.text).not.toContain('held body');
      await settled();
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
  });

  it('a client that leaves while the end waits for storage', async () => {
    await moveAuditLog(t.dataSource, db, true);
    try {
      const client = http10Text(t, 'POST', '/acct/gated', `leave-${adapter}`);
      await expect.poll(() => closeDelimitedBytesHeld(), { timeout: 5_000, interval: 20 }).toBeGreaterThan(0);
      gate.open();
      await sleep(5);
      client.socket.destroy();
      await client.done;
      await settled();
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
  });

  it('a response ended twice', async () => {
    const seen = await http10Text(t, 'POST', '/acct/ends-twice', `twice-${adapter}`).done;
    expect(statusOf(seen.text)).toContain(' 200 ');
    expect(seen.text.endsWith('\r\n\r\nonce\n')).toBe(true);
    await settled();
  });

  it('flushHeaders() after a held write: the bytes go out in order', async () => {
    const seen = await http10Text(t, 'POST', '/acct/flush', `flush-${adapter}`).done;
    expect(seen.text.endsWith('before flush\nafter flush\n')).toBe(true);
    await settled();
  });

  it('a handler that destroys the response after a held write', async () => {
    const seen = await http10Text(t, 'POST', '/acct/destroys', `destroys-${adapter}`).done;
    expect(seen.text, 'a cut body went out as if whole').toBe('');
    await settled();
  });

  it('an event stream (its headers flushed before its first event)', async () => {
    const seen = await http10Text(t, 'GET', '/acct/sse', `sse-${adapter}`).done;
    expect(seen.text).toContain('data: tick-2');
    await settled();
  });

  it('pipelined HTTP/1.0 keep-alive requests on one connection', async () => {
    const { hostname, port } = new URL(t.url);
    const socket = connect(Number(port), hostname);
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    const done = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const request = (id: string) => `POST /acct/gated HTTP/1.0\r\nhost: ${hostname}\r\nconnection: keep-alive\r\ncontent-length: 0\r\nx-request-id: ${id}\r\n\r\n`;
    socket.write(request(`pipe-a-${adapter}`) + request(`pipe-b-${adapter}`));
    // Both handlers run and hold their body; the second response has no connection of its own yet.
    await expect.poll(() => closeDelimitedBytesHeld(), { timeout: 5_000, interval: 20 }).toBe(2 * 'held body\n'.length);
    gate.open();
    await done;
    expect(text.endsWith('\r\n\r\nheld body\n')).toBe(true);
    await settled();
  });
});
