import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { InvalidAuditEventError } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { slowOrderHold } from '../app/orders.controller.js';
import { clientGone } from '../app/request-hold.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('intent events on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const newOrder = () => t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));

  it('stores exactly one complete intent row for a decorated request, before the response', async () => {
    const order = await newOrder();
    const before = Date.now();
    const response = await t.request(`/orders/${order.id}?token=s3cret`, {
      method: 'PATCH',
      json: { status: 'paid' },
      headers: { authorization: 'Bearer alice-token', 'user-agent': 'audit-test/1.0', 'x-reason': 'customer paid' },
    });
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toBeTruthy();

    // No waiting: the row is there when the response is.
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.id).toMatch(UUID_V7);
    expect(row.action).toBe('order.updated');
    expect(row.outcome).toBe('success');
    expect(row.kind).toBe('intent');
    expect(row.actorType).toBe('user');
    expect(row.actorId).toBe('1');
    expect(row.actorDisplay).toBe('alice@example.com');
    expect(row.source).toBe('http');
    expect(row.ip).toBe('127.0.0.1');
    expect(row.userAgent).toBe('audit-test/1.0');
    expect(row.method).toBe('PATCH');
    expect(row.route).toBe('/orders/:id');
    expect(row.path).toBe(`/orders/${order.id}`);
    expect(row.requestId).toBe(requestId);
    expect(row.targetType).toBe('order');
    expect(row.targetId).toBe(String(order.id));
    expect(row.reason).toBe('customer paid');
    expect(row.error).toBeNull();
    expect(row.occurredAt).toBeInstanceOf(Date);
    expect(row.occurredAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(row.occurredAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    expect(JSON.stringify(row)).not.toContain('s3cret');
  });

  it('records a thrown HttpException as one failure row; the client gets the same error', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'paid', total: 5 }));
    const response = await t.request(`/orders/${order.id}/pay`, { method: 'POST', headers: { authorization: 'Bearer bob-token' } });
    expect(response.status).toBe(409);
    expect(await response.json()).toEqual({ statusCode: 409, message: `Order ${order.id} is already paid`, error: 'Conflict' });

    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.paid',
      outcome: 'failure',
      kind: 'intent',
      actorId: '2',
      targetType: 'order',
      targetId: String(order.id),
      requestId: response.headers.get('x-request-id'),
    });
    expect(rows[0]!.error).toEqual({ name: 'ConflictException', status: 409, message: `Order ${order.id} is already paid` });
  });

  it('records an unexpected error by class only: no message, no stack', async () => {
    const response = await t.request('/orders/1/fail', { method: 'POST' });
    expect(response.status).toBe(500);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.failed', outcome: 'failure', actorType: 'anonymous', actorId: null });
    expect(rows[0]!.error).toEqual({ name: 'Error' });
    expect(JSON.stringify(rows[0])).not.toContain('internal details');
  });

  it('writes nothing for an undecorated read', async () => {
    const order = await newOrder();
    const response = await t.request(`/orders/${order.id}`);
    expect(response.status).toBe(200);
    expect(await t.rows()).toHaveLength(0);
  });

  it('takes the target from the returned entity and the actor from the guard', async () => {
    const response = await t.request('/orders', { method: 'POST', json: { total: 42 }, headers: { authorization: 'Bearer bob-token' } });
    expect(response.status).toBe(201);
    const created = (await response.json()) as Order;
    const rows = await t.rows();
    expect(rows.filter((row) => row.kind === 'intent')).toHaveLength(1);
    expect(rows.find((row) => row.kind === 'intent')).toMatchObject({
      action: 'order.created',
      targetType: 'Order',
      targetId: String(created.id),
      actorId: '2',
      actorDisplay: 'bob@example.com',
      method: 'POST',
      route: '/orders',
    });
  });

  it('a client that gives up mid-request: still exactly one intent row claiming every change', async () => {
    const order = await newOrder();
    slowOrderHold.arm();
    const abort = new AbortController();
    const request = t.request(`/orders/${order.id}/slow`, { method: 'PATCH', json: { note: 'gone' }, signal: abort.signal, headers: { 'x-request-id': 'abandoned-1' } });
    // The client gives up once the handler has saved its first change; the handler goes on once the server has seen it go.
    const response = await slowOrderHold.reached;
    abort.abort();
    await expect(request).rejects.toThrow();
    await clientGone(response);
    slowOrderHold.release();
    await expect.poll(async () => (await t.rows()).length, { timeout: 3000 }).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.requestId])).toEqual([['order.slowly-updated', 'intent', 'abandoned-1']]);
    expect(rows[0]!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'gone' }, total: { from: 10, to: 11 } } },
    ]);
  });

  it('echoes a valid X-Request-Id and replaces an invalid or oversized one', async () => {
    const order = await newOrder();
    const good = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'a' }, headers: { 'x-request-id': 'req-123.abc' } });
    expect(good.headers.get('x-request-id')).toBe('req-123.abc');
    const bad = await t.request(`/orders/${order.id}`, {
      method: 'PATCH',
      json: { status: 'b' },
      headers: { 'x-request-id': `<script>${'x'.repeat(300)}` },
    });
    expect(bad.status).toBe(200);
    const generated = bad.headers.get('x-request-id')!;
    expect(generated).toMatch(UUID_V7);
    const rows = await t.rows();
    expect(rows.map((row) => row.requestId)).toEqual(['req-123.abc', generated]);
  });

  it('ignores X-Forwarded-For from an untrusted peer and bounds oversized headers', async () => {
    const order = await newOrder();
    const response = await t.request(`/orders/${order.id}`, {
      method: 'PATCH',
      json: { status: 'x' },
      headers: { 'x-forwarded-for': '1.2.3.4', 'user-agent': 'u'.repeat(8_000) },
    });
    expect(response.status).toBe(200);
    const [row] = await t.rows();
    expect(row!.ip).toBe('127.0.0.1');
    expect(row!.userAgent).toHaveLength(512);
  });

  it('log(): validates input, names the bad field and writes nothing', async () => {
    await expect(t.audit.log({ action: 'Order Updated' })).rejects.toThrow(InvalidAuditEventError);
    await expect(t.audit.log({ action: 'Order Updated' })).rejects.toThrow(/action "Order Updated" is not a dotted lower-case name/);
    await expect(t.audit.log({ action: 'order.updated', outcome: 'maybe' as never })).rejects.toThrow(/outcome/);
    await expect(t.audit.log({ action: 'order.updated', actor: { type: '' } })).rejects.toThrow(/actor\.type/);
    await expect(t.audit.log({ action: 'order.updated', target: { type: 'order' } as never })).rejects.toThrow(/target/);
    await expect(t.audit.log({ action: 'order.updated', colour: 'red' } as never)).rejects.toThrow(/colour/);
    const error = await t.audit.log({ action: 'Order Updated' }).catch((e: unknown) => e);
    expect((error as InvalidAuditEventError).fields).toEqual(['action']);
    expect(await t.rows()).toHaveLength(0);
  });

  it('log(): outside a unit of work stores at once, as system, redacted', async () => {
    const id = await t.audit.log({
      action: 'report.exported',
      target: { type: 'report', id: 7 },
      context: { rows: 3, credentials: { password: 'hunter2', user: 'x' } },
      reason: 'monthly',
    });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id,
      action: 'report.exported',
      kind: 'intent',
      outcome: 'success',
      actorType: 'system',
      source: 'system',
      targetType: 'report',
      targetId: '7',
      reason: 'monthly',
    });
    expect(rows[0]!.context).toEqual({ rows: 3, credentials: '[REDACTED]' });
  });

  it('log(): inside a request, joins the unit and is stored before the response', async () => {
    const order = await newOrder();
    const response = await t.request(`/orders/${order.id}/ship`, { method: 'POST', headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const { eventId } = (await response.json()) as { eventId: string };
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: eventId,
      action: 'order.shipped',
      actorId: '1',
      source: 'http',
      route: '/orders/:id/ship',
      requestId: response.headers.get('x-request-id'),
      targetType: 'Order',
      targetId: String(order.id),
    });
    expect(rows[0]!.context).toEqual({ carrier: 'ups', apiToken: '[REDACTED]' });
  });

  it('runAs(): a job unit with the given actor, source and request id', async () => {
    const result = await t.audit.runAs(
      { type: 'system', id: 'nightly' },
      async () => {
        await t.audit.log({ action: 'report.generated', target: { type: 'report', id: 'r1' } });
        return 'done';
      },
      { requestId: 'req-from-queue' },
    );
    expect(result).toBe('done');
    await expect(t.audit.runAs({ type: '' }, () => 1)).rejects.toThrow(/actor\.type must not be empty/);
    await expect(t.audit.runAs(null as never, () => 1)).rejects.toThrow(/actor: must be an object/);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actorType: 'system', actorId: 'nightly', source: 'job', requestId: 'req-from-queue' });
  });

  it('find() filters and pages newest first; history() lists one target oldest first', async () => {
    for (let i = 0; i < 5; i++) {
      await t.audit.log({ action: i % 2 ? 'doc.read' : 'doc.edited', actor: { type: 'user', id: `u${i % 2}` }, target: { type: 'doc', id: 'd1' } });
    }
    await t.audit.log({ action: 'doc.edited', target: { type: 'doc', id: 'd2' } });

    const first = await t.audit.find({ target: { type: 'doc', id: 'd1' }, limit: 2 });
    expect(first.items).toHaveLength(2);
    expect(first.nextCursor).toBeTruthy();
    const second = await t.audit.find({ target: { type: 'doc', id: 'd1' }, limit: 2, cursor: first.nextCursor! });
    const third = await t.audit.find({ target: { type: 'doc', id: 'd1' }, limit: 2, cursor: second.nextCursor! });
    expect(third.nextCursor).toBeNull();
    const paged = [...first.items, ...second.items, ...third.items];
    expect(paged).toHaveLength(5);
    expect(new Set(paged.map((e) => e.id)).size).toBe(5);
    const times = paged.map((e) => e.occurredAt.getTime());
    expect([...times].sort((a, b) => b - a)).toEqual(times);

    expect((await t.audit.find({ actorId: 'u1' })).items).toHaveLength(2);
    expect((await t.audit.find({ actor: { type: 'user', id: 'u0' } })).items).toHaveLength(3);
    expect((await t.audit.find({ action: 'doc.edited' })).items).toHaveLength(4);
    expect((await t.audit.find({ action: 'doc.edited', outcome: 'failure' })).items).toHaveLength(0);
    expect((await t.audit.find({ source: 'system', from: new Date(Date.now() - 60_000) })).items).toHaveLength(6);
    expect((await t.audit.find({ to: new Date(Date.now() - 60_000) })).items).toHaveLength(0);

    const history = await t.audit.history({ type: 'doc', id: 'd1' });
    expect(history.map((e) => e.action)).toEqual(['doc.edited', 'doc.read', 'doc.edited', 'doc.read', 'doc.edited']);
    expect(history[0]).toMatchObject({ kind: 'intent', outcome: 'success', target: { type: 'doc', id: 'd1' }, changes: [] });
  });
});
