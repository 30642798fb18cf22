import { connect } from 'node:net';
import { Controller, Post, Res, Sse, type MessageEvent } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, interval, take, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Ticks of the event stream, and the time between two. */
const TICKS = 20;
const TICK_MS = 100;

/** Enough of Node's response (Express's response, Fastify's `reply.raw`) to write a body by hand. */
interface RawResponse {
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  write(chunk: string): unknown;
  end(): unknown;
}

@Controller('http10')
class StreamsController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** An event stream of `TICKS` ticks; the first one saves an order. */
  @Sse('events')
  @Audited('ticks.streamed')
  events(): Observable<MessageEvent> {
    return interval(TICK_MS).pipe(
      take(TICKS),
      concatMap(async (i) => {
        if (i === 0) await this.orders.save(this.orders.create({ status: 'streamed', note: 'http10-events' }));
        return { data: `tick-${i}` };
      }),
    );
  }

  /** An `@Res()` handler that writes the start of its body and returns; the rest is written, and the body ended, a moment later. */
  @Post('later')
  @Audited('report.streamed')
  async later(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'streamed', note: 'http10-later' }));
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('report line 1\n');
    setTimeout(() => {
      raw.write('report line 2\n');
      raw.end();
    }, 200);
  }

  /** An `@Res()` handler that writes the start of its body, then fails: Nest answers its error instead, when it can. */
  @Post('fails')
  @Audited('report.failed')
  async fails(@Res() response: { raw?: RawResponse } & RawResponse): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'streamed', note: 'http10-fails' }));
    const raw = response.raw ?? response;
    raw.writeHead(200, { 'content-type': 'text/plain' });
    raw.write('report line 1\n');
    await sleep(10);
    throw new Error('report source went away');
  }
}

interface Seen {
  text: string;
  /** Milliseconds from the request to the first bytes of the body, and to the connection's end. */
  firstBodyAt?: number;
  closedAt?: number;
  reset: boolean;
}

/** An HTTP/1.0 request on a socket of its own (the body ends with the connection), given up after `maxMs`. */
function http10(t: TestApp, method: string, path: string, requestId: string, maxMs = 10_000): Promise<Seen> {
  const { hostname, port } = new URL(t.url);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    const seen: Seen = { text: '', reset: false };
    socket.on('data', (chunk: Buffer) => {
      seen.text += chunk.toString('latin1');
      const bodyStart = seen.text.indexOf('\r\n\r\n');
      if (seen.firstBodyAt === undefined && bodyStart >= 0 && seen.text.length > bodyStart + 4) seen.firstBodyAt = Date.now() - started;
    });
    socket.on('error', () => (seen.reset = true));
    const timer = setTimeout(() => socket.destroy(), maxMs);
    socket.on('close', () => {
      clearTimeout(timer);
      if (Date.now() - started < maxMs) seen.closedAt = Date.now() - started;
      resolve(seen);
    });
    socket.write(`${method} ${path} HTTP/1.0\r\nhost: ${hostname}\r\ncontent-length: 0\r\nx-request-id: ${requestId}\r\n\r\n`);
  });
}

const headersOf = (text: string) => text.slice(0, text.indexOf('\r\n\r\n')).toLowerCase();
const bodyOf = (text: string) => text.slice(text.indexOf('\r\n\r\n') + 4);

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('a stream answered to an HTTP/1.0 request (its body ends with the connection), on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [StreamsController], audit: { recoverAfter: 1_000 } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const rowsOf = async (requestId: string) => (await t.rows()).filter((row) => row.requestId === requestId).map((row) => [row.action, row.outcome, row.changes?.length]);

  it('SSE: each event reaches the client as it is sent, not all at the end; the stream ends with the connection, then its record is there', async () => {
    const requestId = `http10-events-${adapter}`;
    const seen = await http10(t, 'GET', '/http10/events', requestId);
    expect(seen.text.startsWith('HTTP/1.1 200'), seen.text.slice(0, 200)).toBe(true);
    expect(headersOf(seen.text)).toContain('content-type: text/event-stream');
    expect(headersOf(seen.text)).not.toContain('content-length');
    // The stream lasts TICKS × TICK_MS: its first event is out long before.
    expect(seen.firstBodyAt, 'the first event reached the client').toBeDefined();
    expect(seen.firstBodyAt!, `first event after ${seen.firstBodyAt} ms`).toBeLessThan((TICKS * TICK_MS) / 2);
    expect(bodyOf(seen.text)).toContain(`data: tick-${TICKS - 1}\n`);
    expect(seen.closedAt, 'the connection ended').toBeDefined();
    expect(seen.reset).toBe(false);
    await expect.poll(() => rowsOf(requestId), { timeout: 5_000, interval: 100 }).toEqual([['ticks.streamed', 'success', 1]]);
  });

  it('an @Res() handler that returns before its body ends: the whole body, then the end; no empty answer of the framework in its place', async () => {
    const requestId = `http10-later-${adapter}`;
    const seen = await http10(t, 'POST', '/http10/later', requestId);
    expect(seen.text.startsWith('HTTP/1.1 200'), seen.text.slice(0, 200)).toBe(true);
    expect(headersOf(seen.text)).not.toContain('content-length');
    expect(bodyOf(seen.text)).toBe('report line 1\nreport line 2\n');
    expect(seen.closedAt, 'the connection ended').toBeDefined();
    expect(seen.reset).toBe(false);
    expect(await rowsOf(requestId)).toEqual([['report.streamed', 'success', 1]]);
  });

  it('an @Res() handler that fails after writing the start of its body: the error answer Nest sends instead, without the abandoned body’s bytes', async () => {
    const requestId = `http10-fails-${adapter}`;
    const seen = await http10(t, 'POST', '/http10/fails', requestId);
    expect(seen.text.startsWith('HTTP/1.1 500'), seen.text.slice(0, 200)).toBe(true);
    expect(seen.text).not.toContain('report line');
    expect(JSON.parse(bodyOf(seen.text))).toMatchObject({ statusCode: 500 });
    expect(await rowsOf(requestId)).toEqual([['report.failed', 'failure', 1]]);
  });

  it('an @Res() handler that returns before its body ends, storage fails: a 500, never the 200', async () => {
    const requestId = `http10-later-fc-${adapter}`;
    await moveAuditLog(t.dataSource, db, true);
    let seen: Seen;
    try {
      seen = await http10(t, 'POST', '/http10/later', requestId);
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
    expect(seen.text.startsWith('HTTP/1.1 500'), seen.text.slice(0, 200)).toBe(true);
    expect(seen.text).not.toContain('report line');
    await expect.poll(() => rowsOf(requestId), { timeout: 15_000, interval: 250 }).toEqual([['report.streamed', 'success', 1]]);
    await sleep(300); // nothing is written twice
    expect(await rowsOf(requestId)).toEqual([['report.streamed', 'success', 1]]);
  });
});
