import { connect } from 'node:net';
import { Controller, Post, Res, Sse, type MessageEvent } from '@nestjs/common';
import { interval, map, take, type Observable } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { closeDelimitedBytesHeld } from '../../lib/middleware/held-response.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface RawResponse {
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  write(chunk: string | Buffer): unknown;
  end(chunk?: string): unknown;
  flushHeaders(): unknown;
  destroy(): unknown;
}
type AnyResponse = { raw?: RawResponse } & RawResponse;

let gate: { promise: Promise<void>; open(): void };
const newGate = () => {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  gate = { promise, open };
};

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

function http10(t: TestApp, method: string, path: string, id: string): { socket: ReturnType<typeof connect>; done: Promise<{ text: string; reset: boolean }> } {
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
 * The bytes a body that ends with the connection holds back are counted for the whole
 * process (lib/middleware/held-response.ts): every way a response ends or goes away lets
 * them go, the count back to nothing, and what the client gets is what it would without
 * the count.
 */
describe.each(ADAPTERS)('held bytes of HTTP/1.0 bodies are let go on every path, over %s', (adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter, controllers: [AccountingController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    newGate();
    await t.clearAudit();
  });
  afterEach(() => gate.open());

  const settled = () => expect.poll(() => closeDelimitedBytesHeld(), { timeout: 5_000, interval: 20 }).toBe(0);

  it('an @Res() handler that throws after writing', async () => {
    const seen = await http10(t, 'POST', '/acct/throws', `throws-${adapter}`).done;
    expect(statusOf(seen.text)).toContain(' 500 ');
    expect(seen.text).not.toContain('part 1');
    await settled();
  });

  it('fail-closed: storage fails while the body is held', async () => {
    await moveAuditLog(t.dataSource, db, true);
    try {
      const client = http10(t, 'POST', '/acct/gated', `fc-${adapter}`);
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
      const client = http10(t, 'POST', '/acct/gated', `leave-${adapter}`);
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
    const seen = await http10(t, 'POST', '/acct/ends-twice', `twice-${adapter}`).done;
    expect(statusOf(seen.text)).toContain(' 200 ');
    expect(seen.text.endsWith('\r\n\r\nonce\n')).toBe(true);
    await settled();
  });

  it('flushHeaders() after a held write: the bytes go out in order', async () => {
    const seen = await http10(t, 'POST', '/acct/flush', `flush-${adapter}`).done;
    expect(seen.text.endsWith('before flush\nafter flush\n')).toBe(true);
    await settled();
  });

  it('a handler that destroys the response after a held write', async () => {
    const seen = await http10(t, 'POST', '/acct/destroys', `destroys-${adapter}`).done;
    expect(seen.text, 'a cut body went out as if whole').toBe('');
    await settled();
  });

  it('an event stream (its headers flushed before its first event)', async () => {
    const seen = await http10(t, 'GET', '/acct/sse', `sse-${adapter}`).done;
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
