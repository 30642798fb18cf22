import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { INVOICE, SizedBodyController } from '../app/hostile-sized-body.controller.js';
import { Order } from '../app/order.entity.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { complete, type Completion } from '../support/response-completion.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));


/**
 * An HTTP/1.0 request on a socket of its own: the response's body, with no length declared
 * and no chunked encoding, ends where the connection does. Resolves with what arrived and
 * whether the connection ended in an error (a reset) rather than in an orderly close.
 */
function http10(t: TestApp, path: string, headers: Record<string, string>): Promise<{ text: string; reset: boolean }> {
  const { hostname, port } = new URL(t.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    let reset = false;
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => (reset = true));
    socket.on('close', () => resolve({ text, reset }));
    const lines = Object.entries({ host: hostname, 'content-length': '0', ...headers }).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`POST ${path} HTTP/1.0\r\n${lines.join('')}\r\n`);
  });
}

describe.each(combos)('a body whose length is declared, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // The retry pass runs every recoverAfter / 2: soon after storage is back.
    t = await createTestApp({ db, adapter, controllers: [SizedBodyController], audit: { recoverAfter: 1_000 } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  /** `audit_log` under another name (`away`) or its own; the domain tables are untouched. */
  const renameAuditLog = (away: boolean): Promise<void> => moveAuditLog(t.dataSource, db, away);

  it('storage works: the whole body arrives, its length as declared, after the event is stored; HEAD gets the length and no body', async () => {
    const file = await complete(t, '/hostile/sized/file', { headers: { 'x-request-id': `sized-file-${adapter}` } });
    const rowsAtFile = await t.rows();
    const written = await complete(t, '/hostile/sized/written', { method: 'POST', headers: { 'x-request-id': `sized-written-${adapter}` } });
    const rowsAtWritten = await t.rows();
    expect(file).toEqual({ kind: 'complete', status: 200, body: INVOICE });
    expect(written).toEqual({ kind: 'complete', status: 200, body: INVOICE });
    expect(rowsAtFile.map((row) => [row.requestId, row.action, row.outcome, row.changes?.length])).toEqual([[`sized-file-${adapter}`, 'invoice.downloaded', 'success', 1]]);
    expect(rowsAtWritten.map((row) => [row.requestId, row.action, row.outcome, row.changes?.length])).toEqual([
      [`sized-file-${adapter}`, 'invoice.downloaded', 'success', 1],
      [`sized-written-${adapter}`, 'invoice.written', 'success', 1],
    ]);

    const head = await t.request('/hostile/sized/file', { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    expect({ status: head.status, length: head.headers.get('content-length'), body: await head.text() }).toEqual({
      status: 200,
      length: String(Buffer.byteLength(INVOICE)),
      body: '',
    });
  });

  it('storage fails: no client gets the whole body with a 2xx; the events are stored once storage is back', async () => {
    const requestIds = { file: `sized-fc-file-${adapter}`, written: `sized-fc-written-${adapter}` };
    await renameAuditLog(true);
    let file: Completion;
    let written: Completion;
    try {
      file = await complete(t, '/hostile/sized/file', { headers: { 'x-request-id': requestIds.file } });
      written = await complete(t, '/hostile/sized/written', { method: 'POST', headers: { 'x-request-id': requestIds.written } });
    } finally {
      await renameAuditLog(false);
    }
    // Both handlers committed their change: the audit trail owes a record of each.
    await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'sized-file' });
    await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'sized-written' });

    // No answer without its record: a connection cut before the body's last byte, or a 5xx.
    for (const [name, seen] of [['the StreamableFile of a buffer', file], ['the body written with its length declared', written]] as const) {
      const whole = seen.kind === 'complete' && seen.status < 300;
      expect.soft(whole, `${name} arrived whole with a 2xx: ${JSON.stringify({ ...seen, body: undefined })}`).toBe(false);
    }

    const ours = async () => (await t.rows()).filter((row) => Object.values(requestIds).includes(row.requestId ?? ''));
    await expect.poll(async () => (await ours()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(2);
    await new Promise((resolve) => setTimeout(resolve, 500)); // nothing is written twice
    expect((await ours()).map((row) => [row.requestId, row.action, row.changes?.length]).sort()).toEqual([
      [requestIds.file, 'invoice.downloaded', 1],
      [requestIds.written, 'invoice.written', 1],
    ]);
  });

  it('storage works, HTTP/1.0 (the body ends with the connection): the whole body, after the event is stored, then an orderly close', async () => {
    const requestId = `sized-http10-${adapter}`;
    const seen = await http10(t, '/hostile/sized/unsized', { 'x-request-id': requestId });
    const rowsAtClose = await t.rows();
    expect(seen.text.startsWith('HTTP/1.1 200'), seen.text.slice(0, 200)).toBe(true);
    expect(seen.text.endsWith(`\r\n\r\n${INVOICE}`), 'the whole body after the headers').toBe(true);
    expect(seen.reset).toBe(false);
    expect(rowsAtClose.filter((row) => row.requestId === requestId).map((row) => [row.action, row.outcome])).toEqual([['invoice.written', 'success']]);
  });

  it('storage fails, HTTP/1.0 (the body ends with the connection): the body is held with its headers, the client gets a 500, never a 200', async () => {
    const requestId = `sized-fc-http10-${adapter}`;
    await renameAuditLog(true);
    let seen: { text: string; reset: boolean };
    try {
      seen = await http10(t, '/hostile/sized/unsized', { 'x-request-id': requestId });
    } finally {
      await renameAuditLog(false);
    }
    // A reset right after the body's bytes may reach the client as an orderly end (Linux):
    // only an answer that never sent the 200 tells the client for sure.
    expect(seen.text.startsWith('HTTP/1.1 500'), seen.text.slice(0, 200)).toBe(true);
    expect(seen.text).not.toContain('invoice line');
    await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'unsized-written' });
    await expect.poll(async () => (await t.rows()).filter((row) => row.requestId === requestId).length, { timeout: 15_000, interval: 250 }).toBe(1);
  });

  it('storage fails, HTTP/1.0, a body over the 1 MiB held back: it goes out as written and the connection is reset; the event is stored once storage is back', async () => {
    const requestId = `sized-fc-http10-large-${adapter}`;
    await renameAuditLog(true);
    let seen: { text: string; reset: boolean };
    try {
      seen = await http10(t, '/hostile/sized/unsized-large', { 'x-request-id': requestId });
    } finally {
      await renameAuditLog(false);
    }
    // What reaches the client before the reset depends on the sockets' timing (nothing, the
    // headers, part of the body): it is never a 500, as the headers were out at the failure.
    expect(seen.text.startsWith('HTTP/1.1 500'), seen.text.slice(0, 200)).toBe(false);
    await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'unsized-large-written' });
    await expect.poll(async () => (await t.rows()).filter((row) => row.requestId === requestId).length, { timeout: 15_000, interval: 250 }).toBe(1);
  });
});
