import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { ExpressResponseController, FastifyReplyController, STREAMED_LINES } from '../app/raw-response.controller.js';
import { NestedOrderWriter, RecordPathController } from '../app/record-path.controller.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

/** How a client saw a response end. */
type Completion = { kind: 'complete'; status: number; body: string } | { kind: 'broken'; status?: number; error: string };

/** Sends a request and reads the whole body; a connection destroyed on the way shows as `broken`. */
async function complete(t: TestApp, path: string, init: RequestInit & { json?: unknown }): Promise<Completion> {
  let status: number | undefined;
  try {
    const response = await t.request(path, { ...init, signal: AbortSignal.timeout(10_000) });
    status = response.status;
    return { kind: 'complete', status, body: await response.text() };
  } catch (error) {
    return { kind: 'broken', status, error: String(error) };
  }
}

describe.each(combos)('fail-closed when audit storage fails on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      controllers: [RecordPathController, adapter === 'express' ? ExpressResponseController : FastifyReplyController],
      providers: [NestedOrderWriter],
      // The retry pass runs every recoverAfter / 2 (at most 5 s): 500 ms, not 5 s, after storage is back.
      audit: { recoverAfter: 1_000 },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** `audit_log` under another name (`away`) or its own; the domain tables are untouched. */
  const renameAuditLog = (away: boolean): Promise<void> => moveAuditLog(t.dataSource, db, away);

  it('answers 500 (or breaks the stream) while events cannot be stored; the journal gets them stored once storage is back', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    const requestIds = { patch: `fc-patch-${adapter}`, raw: `fc-raw-${adapter}`, stream: `fc-stream-${adapter}`, written: `fc-written-${adapter}` };

    await renameAuditLog(true);
    let patch: Completion;
    let raw: Completion;
    let stream: Completion;
    let written: Completion;
    try {
      patch = await complete(t, `/orders/${order.id}`, {
        method: 'PATCH',
        json: { status: 'paid' },
        headers: { authorization: 'Bearer alice-token', 'x-request-id': requestIds.patch },
      });
      raw = await complete(t, '/raw/things', {
        method: 'POST',
        json: { note: 'fail-closed-raw' },
        headers: { authorization: 'Bearer alice-token', 'x-request-id': requestIds.raw },
      });
      stream = await complete(t, '/record-path/export', {
        method: 'POST',
        json: { note: 'fail-closed-stream' },
        headers: { authorization: 'Bearer alice-token', 'x-request-id': requestIds.stream },
      });
      written = await complete(t, '/raw/things/stream', {
        method: 'POST',
        json: { note: 'fail-closed-written' },
        headers: { authorization: 'Bearer alice-token', 'x-request-id': requestIds.written },
      });
    } finally {
      await renameAuditLog(false);
    }

    // The domain writes committed: the audit trail owes a record of each.
    expect((await t.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('paid');
    const rawOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'fail-closed-raw' });
    const streamOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'fail-closed-stream' });
    const writtenOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'fail-closed-written' });

    // No answer without its record: never a 2xx, never a cleanly completed stream.
    // (Soft: every path is reported, and the recovery below is checked too.)
    expect.soft(patch, 'the @Audited handler').toMatchObject({ kind: 'complete', status: 500 });
    expect.soft(raw, 'the @Res() handler').toMatchObject({ kind: 'complete', status: 500 });
    // A stream whose headers are out: the connection is destroyed, or the answer is a 5xx.
    for (const [name, seen] of [['the StreamableFile', stream], ['the body written in chunks', written]] as const) {
      const cleanly = seen.kind === 'complete' && seen.status < 300 && seen.body === STREAMED_LINES.join('');
      expect.soft(cleanly, `${name} completed cleanly: ${JSON.stringify(seen)}`).toBe(false);
      if (seen.kind === 'complete') expect.soft(seen.status, `the status of ${name}`).toBeGreaterThanOrEqual(500);
    }

    // Storage is back: the live instance stores the journaled units' events, each once.
    const ours = async () => (await t.rows()).filter((row) => Object.values(requestIds).includes(row.requestId ?? ''));
    await expect.poll(async () => (await ours()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(4);
    await new Promise((resolve) => setTimeout(resolve, 500)); // nothing is written twice
    const rows = await ours();
    expect(rows.map((row) => [row.requestId, row.action, row.kind]).sort()).toEqual(
      [
        [requestIds.patch, 'order.updated', 'intent'],
        [requestIds.raw, 'thing.created', 'intent'],
        [requestIds.stream, 'thing.exported', 'intent'],
        [requestIds.written, 'thing.written', 'intent'],
      ].sort(),
    );
    for (const row of rows) expect(['success', 'unknown']).toContain(row.outcome);
    const byRequest = Object.fromEntries(rows.map((row) => [row.requestId, row]));
    expect(byRequest[requestIds.patch]!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'paid' } } },
    ]);
    expect(byRequest[requestIds.raw]!.changes).toHaveLength(1);
    expect(byRequest[requestIds.raw]!.changes![0]).toMatchObject({ entity: 'Order', id: String(rawOrder.id), operation: 'insert' });
    expect(byRequest[requestIds.stream]!.changes).toHaveLength(1);
    expect(byRequest[requestIds.stream]!.changes![0]).toMatchObject({ entity: 'Order', id: String(streamOrder.id), operation: 'insert' });
    expect(byRequest[requestIds.written]!.changes).toHaveLength(1);
    expect(byRequest[requestIds.written]!.changes![0]).toMatchObject({ entity: 'Order', id: String(writtenOrder.id), operation: 'insert' });
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
