import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from 'nestjs-system-audit';
import { createSampleApp, type SampleApp } from '../../sample-app/create-sample-app.js';
import { OrderExpiryJob } from '../../sample-app/orders/order-expiry.job.js';

// The sample imports the package by name, as an application does (at run time that
// name resolves to the built dist/). vitest.config.ts points the name at the library
// source, so the smoke test needs no build step and always exercises the current lib/.

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Token = 'alice-token' | 'bob-token' | 'carol-token';

interface EventJson {
  action: string;
  outcome: string;
  source: string;
  actor: { type: string; id?: string };
  [field: string]: unknown;
}

interface PageJson {
  items: EventJson[];
  nextCursor: string | null;
}

const json = <T>(response: Response): Promise<T> => response.json() as Promise<T>;
const actions = (events: EventJson[]): string[] => events.map((event) => event.action);

// One order's life, step by step: each test builds on the ones before it.
describe('sample app: orders service on SQLite', () => {
  let sample: SampleApp;
  let seen = new Set<string>();

  beforeAll(async () => {
    sample = await createSampleApp({
      database: ':memory:',
      port: 0,
      host: '127.0.0.1',
      expiryIntervalSeconds: 0, // the test runs the job itself
      logger: ['error', 'warn'],
    });
  });
  afterAll(async () => {
    await sample?.app.close();
  });

  const call = (method: string, path: string, token: Token, body?: unknown): Promise<Response> =>
    fetch(`${sample.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        'user-agent': 'sample-smoke/1.0',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  /** The audit rows written since the last call, oldest first. */
  async function newRows(): Promise<AuditLogEntity[]> {
    const rows = await sample.app
      .get(DataSource)
      .getRepository(AuditLogEntity)
      .find({ order: { occurredAt: 'ASC', id: 'ASC' } });
    const fresh = rows.filter((row) => !seen.has(row.id));
    seen = new Set(rows.map((row) => row.id));
    return fresh;
  }

  /** The one row a request to an `@Audited` route wrote, with the request data every such row carries. */
  async function onlyRow(response: Response, expected: { method: string; route: string; path: string }): Promise<AuditLogEntity> {
    const rows = await newRows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.id).toMatch(UUID_V7);
    expect(row.kind).toBe('intent');
    expect(row.requestId).toBe(response.headers.get('x-request-id'));
    expect(row.ip).toBe('127.0.0.1');
    expect(row.userAgent).toBe('sample-smoke/1.0');
    expect(row.method).toBe(expected.method);
    expect(row.route).toBe(expected.route);
    expect(row.path).toBe(expected.path);
    return row;
  }

  const bob = { actorType: 'user', actorId: 'bob', actorDisplay: 'bob@example.com' };
  const alice = { actorType: 'user', actorId: 'alice', actorDisplay: 'alice@example.com' };

  it('POST /orders: order.created by the customer, source http, target the new order', async () => {
    const response = await call('POST', '/orders', 'bob-token', { description: 'Espresso beans, 1 kg', totalCents: 2400 });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ id: 1, customerId: 'bob', status: 'pending', totalCents: 2400 });
    const row = await onlyRow(response, { method: 'POST', route: '/orders', path: '/orders' });
    expect(row).toMatchObject({
      action: 'order.created',
      outcome: 'success',
      source: 'http',
      ...bob,
      targetType: 'order',
      targetId: '1',
      reason: null,
      error: null,
    });
  });

  it('PATCH /orders/:id: order.updated', async () => {
    const response = await call('PATCH', '/orders/1', 'bob-token', { totalCents: 2600 });
    expect(response.status).toBe(200);
    const row = await onlyRow(response, { method: 'PATCH', route: '/orders/:id', path: '/orders/1' });
    expect(row).toMatchObject({ action: 'order.updated', outcome: 'success', source: 'http', ...bob, targetType: 'order', targetId: '1' });
    // The handler's save is claimed by its intent event: no separate change row.
    expect(row.changes).toMatchObject([{ entity: 'Order', id: '1', operation: 'update', fields: { totalCents: { from: 2400, to: 2600 } } }]);
  });

  it('POST /orders/:id/pay: order.paid with the amount as context', async () => {
    const response = await call('POST', '/orders/1/pay', 'bob-token');
    expect(response.status).toBe(200);
    const row = await onlyRow(response, { method: 'POST', route: '/orders/:id/pay', path: '/orders/1/pay' });
    expect(row).toMatchObject({ action: 'order.paid', outcome: 'success', source: 'http', ...bob, targetType: 'order', targetId: '1' });
    expect(row.context).toEqual({ amountCents: 2600, currency: 'EUR' });
  });

  it('paying twice: 409 for the client, an order.paid failure row with the error summary', async () => {
    const response = await call('POST', '/orders/1/pay', 'bob-token');
    expect(response.status).toBe(409);
    const row = await onlyRow(response, { method: 'POST', route: '/orders/:id/pay', path: '/orders/1/pay' });
    expect(row).toMatchObject({ action: 'order.paid', outcome: 'failure', source: 'http', ...bob, targetType: 'order', targetId: '1' });
    expect(row.error).toEqual({ name: 'ConflictException', status: 409, message: 'Order 1 is paid; only pending orders can be paid' });
  });

  it('POST /admin/orders/:id/refund as a customer: 403, recorded as an order.refunded failure', async () => {
    const response = await call('POST', '/admin/orders/1/refund', 'bob-token', { reason: 'please' });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ statusCode: 403, message: 'Admins only' });
    const row = await onlyRow(response, { method: 'POST', route: '/admin/orders/:id/refund', path: '/admin/orders/1/refund' });
    expect(row).toMatchObject({
      action: 'order.refunded',
      outcome: 'failure',
      source: 'admin',
      ...bob,
      targetType: 'order',
      targetId: '1',
      reason: 'please',
    });
    expect(row.error).toMatchObject({ name: 'ForbiddenException', status: 403 });
    expect(await json<unknown>(await call('GET', '/orders/1', 'bob-token'))).toMatchObject({ status: 'paid' });
  });

  it('POST /admin/orders/:id/refund as admin: order.refunded, source admin, with the reason', async () => {
    const response = await call('POST', '/admin/orders/1/refund', 'alice-token', { reason: 'damaged in transit' });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ id: 1, status: 'refunded' });
    const row = await onlyRow(response, { method: 'POST', route: '/admin/orders/:id/refund', path: '/admin/orders/1/refund' });
    expect(row).toMatchObject({
      action: 'order.refunded',
      outcome: 'success',
      source: 'admin',
      ...alice,
      targetType: 'order',
      targetId: '1',
      reason: 'damaged in transit',
    });
  });

  it('POST /orders/:id/notes (not @Audited): no intent, one fallback change row for the note', async () => {
    const response = await call('POST', '/orders/1/notes', 'bob-token', { body: 'Leave at the back door' });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ id: 1, orderId: 1, authorId: 'bob', body: 'Leave at the back door' });
    const rows = await newRows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'orderNote.created',
      outcome: 'success',
      kind: 'change',
      source: 'http',
      ...bob,
      method: 'POST',
      route: '/orders/:id/notes',
      path: '/orders/1/notes',
      requestId: response.headers.get('x-request-id'),
      targetType: 'OrderNote',
      targetId: '1',
    });
    expect(rows[0]!.changes).toMatchObject([
      {
        entity: 'OrderNote',
        id: '1',
        operation: 'insert',
        fields: { orderId: { to: 1 }, authorId: { to: 'bob' }, body: { to: 'Leave at the back door' } },
      },
    ]);
  });

  it('the expiry job: order.expired as system/order-expirer, source job, no request data', async () => {
    const created = await call('POST', '/orders', 'carol-token', { description: 'Green tea, 250 g', totalCents: 900 });
    expect(created.status).toBe(201);
    expect(await newRows()).toMatchObject([{ action: 'order.created', actorId: 'carol', targetId: '2' }]);

    const expired = await sample.app.get(OrderExpiryJob).expireStale(new Date(Date.now() + 60_000));
    expect(expired).toBe(1); // order 1 is refunded; only carol's pending order goes

    const rows = await newRows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.expired',
      outcome: 'success',
      kind: 'intent',
      source: 'job',
      actorType: 'system',
      actorId: 'order-expirer',
      actorDisplay: 'Order expiry job',
      targetType: 'order',
      targetId: '2',
      reason: 'not paid in time',
      method: null,
      route: null,
      path: null,
      ip: null,
    });
    expect(rows[0]!.requestId).toMatch(UUID_V7);
    // The job's update by criteria is claimed by the event that names the order as its target.
    expect(rows[0]!.changes).toMatchObject([{ entity: 'Order', id: '2', operation: 'update', fields: { status: { from: 'pending', to: 'expired' } } }]);
    expect(await (await call('GET', '/orders/2', 'carol-token')).json()).toMatchObject({ status: 'expired' });
  });

  it('GET /api/audit: 403 for a customer (not an @Audited route: nothing recorded)', async () => {
    const response = await call('GET', '/api/audit', 'bob-token');
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ statusCode: 403, message: 'Admins only' });
    expect(await newRows()).toEqual([]);
  });

  it('GET /api/audit: admins search the trail, newest first, with filters', async () => {
    const response = await call('GET', '/api/audit?kind=intent', 'alice-token');
    expect(response.status).toBe(200);
    const page = await json<PageJson>(response);
    expect(actions(page.items)).toEqual([
      'order.expired',
      'order.created',
      'order.refunded',
      'order.refunded',
      'order.paid',
      'order.paid',
      'order.updated',
      'order.created',
    ]);
    expect(page.nextCursor).toBeNull();
    expect(page.items[2]).toMatchObject({
      action: 'order.refunded',
      kind: 'intent',
      source: 'admin',
      actor: { type: 'user', id: 'alice', display: 'alice@example.com' },
      request: { method: 'POST', route: '/admin/orders/:id/refund', path: '/admin/orders/1/refund' },
      target: { type: 'order', id: '1' },
      reason: 'damaged in transit',
    });

    const failures = await json<PageJson>(await call('GET', '/api/audit?actorId=bob&action=order.paid,order.refunded&outcome=failure', 'alice-token'));
    expect(failures.items.map((event) => [event.action, (event['error'] as { status: number }).status])).toEqual([
      ['order.refunded', 403],
      ['order.paid', 409],
    ]);

    const notes = await json<PageJson>(await call('GET', '/api/audit?kind=change&targetType=OrderNote', 'alice-token'));
    expect(actions(notes.items)).toEqual(['orderNote.created']);

    const firstPage = await json<PageJson>(await call('GET', '/api/audit?kind=intent&source=http&limit=2', 'alice-token'));
    expect(actions(firstPage.items)).toEqual(['order.created', 'order.paid']);
    const secondPage = await json<PageJson>(
      await call('GET', `/api/audit?kind=intent&source=http&limit=2&cursor=${firstPage.nextCursor}`, 'alice-token'),
    );
    expect(actions(secondPage.items)).toEqual(['order.paid', 'order.updated']);

    const bad = await call('GET', '/api/audit?limit=lots', 'alice-token');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ message: 'Invalid audit query: limit must be a whole number from 1 to 1000' });
    expect(await newRows()).toEqual([]); // reading the trail writes nothing
  });

  it('GET /orders/:id/history: the order\'s events oldest first, admins only', async () => {
    expect((await call('GET', '/orders/1/history', 'bob-token')).status).toBe(403);
    const response = await call('GET', '/orders/1/history', 'alice-token');
    expect(response.status).toBe(200);
    const history = await json<EventJson[]>(response);
    expect(history.map(({ action, outcome, source, actor }) => [action, outcome, source, actor.id])).toEqual([
      ['order.created', 'success', 'http', 'bob'],
      ['order.updated', 'success', 'http', 'bob'],
      ['order.paid', 'success', 'http', 'bob'],
      ['order.paid', 'failure', 'http', 'bob'],
      ['order.refunded', 'failure', 'admin', 'bob'],
      ['order.refunded', 'success', 'admin', 'alice'],
    ]);
  });

  it('GET /audit: the viewer in a browser, signed in once with ?token= (an HttpOnly cookie after), admins only', async () => {
    const page = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(`${sample.url}${path}`, { headers: { 'user-agent': 'sample-smoke/1.0', ...headers }, redirect: 'manual' });
    expect((await page('/audit')).status).toBe(401);
    const customer = await page('/audit?token=bob-token');
    expect(customer.status).toBe(403);
    expect(customer.headers.get('set-cookie')).toBeNull();
    // Refused views are on the trail too, as failures with the guard's status.
    expect((await newRows()).map((row) => [row.action, row.outcome, row.actorType, row.actorId, row.error?.status])).toEqual([
      ['audit.viewed', 'failure', 'anonymous', null, 401],
      ['audit.viewed', 'failure', 'user', 'bob', 403],
    ]);

    const signIn = await page('/audit?token=alice-token&action=order.refunded');
    expect(signIn.status).toBe(200);
    expect(signIn.headers.get('content-security-policy')).toContain("default-src 'none'");
    const cookie = signIn.headers.get('set-cookie')!;
    expect(cookie).toBe('audit_token=alice-token; Path=/audit; HttpOnly; SameSite=Strict; Max-Age=28800');
    const html = await signIn.text();
    const refunds = [...html.matchAll(/href="\/audit\/events\/([0-9a-f-]{36})"/g)].map((match) => match[1]!);
    expect(new Set(refunds).size).toBe(2);
    expect(html).not.toContain('alice-token'); // no link carries the token

    const jar = { cookie: cookie.split(';')[0]! };
    const detail = await page(`/audit/events/${refunds[0]}`, jar);
    expect(detail.status).toBe(200);
    expect(await detail.text()).toContain('damaged in transit');
    expect((await page('/audit/viewer.css', jar)).status).toBe(200);
    expect((await page('/orders/1', jar)).status).toBe(401); // the cookie opens the viewer only
    expect((await fetch(`${sample.url}/orders`, { method: 'POST', headers: { ...jar, 'content-type': 'application/json' }, body: '{}' })).status).toBe(401);

    const views = await newRows();
    expect(views.map((row) => [row.action, row.outcome, row.actorId, row.context ?? row.error?.status])).toEqual([
      ['audit.viewed', 'success', 'alice', { view: 'search', query: { action: 'order.refunded' } }],
      ['audit.viewed', 'success', 'alice', { view: 'event', eventId: refunds[0] }],
      ['order.created', 'failure', null, 401], // the refused write, anonymous
    ]);
    expect(views.every((row) => row.path !== null && !row.path.includes('token'))).toBe(true);
  });
});
