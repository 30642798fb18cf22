// AuditViewerModule over HTTP, on every database and both adapters: the guard (403, and
// nothing of the trail), the security headers on every answer, search with keyset paging,
// an event with its diff, a target's timeline, bad input as a 400 page, escaping, the
// `audit.viewed` events (and nothing else written), and start-up without a guard.
import { randomBytes } from 'node:crypto';
import { Injectable, Module, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditCheckpointEntity, AuditEntities, AuditModule, AuditViewerModule, InvalidAuditOptionsError } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const XSS = '<script>alert(1)</script>';
const ALICE = { authorization: 'Bearer alice-token' };

/** The hrefs of a page's links, decoded from their HTML attribute escaping. */
const links = (page: string): string[] => [...page.matchAll(/href="([^"]*)"/g)].map((match) => match[1]!.replaceAll('&amp;', '&'));

function expectStrictHeaders(response: Response): void {
  expect(response.headers.get('content-security-policy')).toBe(CSP);
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  expect(response.headers.get('cache-control')).toBe('no-store');
  expect(response.headers.get('x-frame-options')).toBe('DENY');
}

describe.each(databases().flatMap((kind) => ADAPTERS.map((adapter) => [kind, adapter] as const)))('audit viewer on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;
  let orderId: number;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard, pageSize: 4 })] });
    const created = await t.request('/orders', { method: 'POST', headers: { authorization: 'Bearer bob-token' }, json: { total: 7 } });
    orderId = ((await created.json()) as { id: number }).id;
    const patched = await t.request(`/orders/${orderId}`, { method: 'PATCH', headers: { authorization: 'Bearer bob-token', 'x-reason': XSS }, json: { status: XSS } });
    expect(patched.status).toBe(200);
    for (let i = 0; i < 7; i++) await t.audit.log({ action: 'report.exported', actor: { type: 'service', id: 'reporter' }, context: { n: i } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const viewed = async () => (await t.rows()).filter((row) => row.action === 'audit.viewed');

  it('answers 403 with the guard\'s exception and no trail data; the refusal carries the strict headers', async () => {
    const before = (await viewed()).length;
    for (const headers of [{}, { authorization: 'Bearer bob-token' }] as Array<Record<string, string>>) {
      const response = await t.request('/audit?action=order.updated', { headers });
      expect(response.status).toBe(403);
      expectStrictHeaders(response);
      const body = await response.text();
      expect(JSON.parse(body)).toMatchObject({ statusCode: 403, message: 'Admins only' });
      expect(body).not.toContain('order.');
    }
    // The refusals are audited like any guarded @Audited route: failures, 403.
    const refused = (await viewed()).slice(before);
    expect(refused.map((row) => [row.outcome, row.error?.status])).toEqual([
      ['failure', 403],
      ['failure', 403],
    ]);
  });

  it('serves the search page with strict headers, as HTML without any script', async () => {
    const response = await t.request('/audit', { headers: ALICE });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expectStrictHeaders(response);
    const page = await response.text();
    expect(page).toContain('<link rel="stylesheet" href="/audit/viewer.css">');
    expect(page).not.toMatch(/<script|javascript:|\son\w+=/i);
  });

  it('serves its stylesheet from under its path, with the same headers', async () => {
    const response = await t.request('/audit/viewer.css');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expectStrictHeaders(response);
    expect(await response.text()).toContain('@media (max-width: 600px)');
  });

  it('pages through the results newest first with the "Older" link\'s cursor', async () => {
    const seen: string[] = [];
    let next: string | undefined = '/audit?action=report.exported';
    for (let pages = 0; next && pages < 5; pages++) {
      const page = await (await t.request(next, { headers: ALICE })).text();
      seen.push(...[...page.matchAll(/href="\/audit\/events\/([0-9a-f-]{36})"/g)].map((match) => match[1]!).filter((id, i, all) => all.indexOf(id) === i));
      next = links(page).find((link) => link.includes('cursor='));
    }
    const stored = (await t.rows()).filter((row) => row.action === 'report.exported').reverse();
    expect(seen).toEqual(stored.map((row) => row.id));
    expect(seen).toHaveLength(7);
  });

  it('filters by actor, target, outcome and time, and shows the filters back in the form', async () => {
    const query = new URLSearchParams({ actorType: 'user', actorId: '2', targetType: 'order', targetId: String(orderId), outcome: 'success', from: '2000-01-01T00:00', to: '2999-01-01T00:00' });
    const page = await (await t.request(`/audit?${query}`, { headers: ALICE })).text();
    const ids = [...new Set([...page.matchAll(/\/audit\/events\/([0-9a-f-]{36})/g)].map((match) => match[1]))];
    const expected = (await t.rows()).filter((row) => row.actorId === '2' && row.targetType?.toLowerCase() === 'order' && row.targetId === String(orderId)).reverse();
    expect(expected.map((row) => row.action)).toEqual(['order.updated', 'order.created']);
    expect(ids).toEqual(expected.map((row) => row.id));
    expect(page).toContain('name="actorId" value="2"');
    expect(page).toContain('name="from" value="2000-01-01T00:00"');
    const none = await (await t.request('/audit?from=2999-01-01T00:00', { headers: ALICE })).text();
    expect(none).toContain('No events match');
  });

  it('shows an event with every field, its field diff, and stored markup as text', async () => {
    const updated = (await t.rows()).find((row) => row.action === 'order.updated')!;
    const response = await t.request(`/audit/events/${updated.id}`, { headers: ALICE });
    expect(response.status).toBe(200);
    expectStrictHeaders(response);
    const page = await response.text();
    expect(page).toContain(updated.id);
    expect(page).toContain('Order #' + orderId);
    expect(page).toMatch(/<td>status<\/td><td class="diff-from"><code>&quot;new&quot;<\/code><\/td><td class="diff-to"><code>&quot;&lt;script&gt;alert\(1\)&lt;\/script&gt;&quot;<\/code><\/td>/);
    expect(page).toContain('<dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>'); // the reason
    expect(page).not.toMatch(/<script/i);
    expect(page).toContain(`href="/audit/timeline?type=order&amp;id=${orderId}"`);
    expect(page).toContain('Integrity (the Merkle tree and signed checkpoints) is not configured.');
  });

  it('shows a target\'s timeline oldest first, with the diffs', async () => {
    const response = await t.request(`/audit/timeline?type=order&id=${orderId}`, { headers: ALICE });
    expect(response.status).toBe(200);
    const page = await response.text();
    const created = page.indexOf('<strong>order.created</strong>');
    const updated = page.indexOf('<strong>order.updated</strong>');
    expect(created).toBeGreaterThan(0);
    expect(updated).toBeGreaterThan(created);
    expect(page).toContain('Order #' + orderId + ' · created');
    expect(page).toContain('<em>&lt;script&gt;alert(1)&lt;/script&gt;</em>');
  });

  it('answers bad input with a 400 page naming the problem (not a 500)', async () => {
    const cases: Array<[string, string]> = [
      ['/audit?from=yesterday', 'Invalid audit query: from is not a valid date and time: &quot;yesterday&quot;'],
      ['/audit?cursor=bm90LWEtY3Vyc29y', 'Invalid audit query: cursor is not a cursor returned by find()'],
      ['/audit?outcome=maybe', 'Invalid audit query: outcome must be one of success, failure, unknown'],
      ['/audit?targetId=1', 'Invalid audit query: targetId needs a target type'],
      ['/audit?action=a&action=b', 'Invalid audit query: action is given more than once'],
      ['/audit/events/not-an-id', 'Invalid audit query: id is not an event id (a UUID)'],
      ['/audit/timeline?type=order', 'Invalid audit query: target needs both a type and an id'],
    ];
    for (const [path, message] of cases) {
      const response = await t.request(path, { headers: ALICE });
      expect(response.status, path).toBe(400);
      expectStrictHeaders(response);
      expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(await response.text(), path).toContain(message);
    }
    const missing = await t.request('/audit/events/00000000-0000-7000-8000-000000000000', { headers: ALICE });
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('No audit event has the id &quot;00000000-0000-7000-8000-000000000000&quot;');
  });

  it('records each page view as audit.viewed, by the request\'s actor, with what was viewed; nothing else is written', async () => {
    await t.clearAudit();
    const orders = await t.dataSource.getRepository(Order).find({ order: { id: 'ASC' } });
    const checkpoints = await t.dataSource.getRepository(AuditCheckpointEntity).count();
    const event = await t.audit.find({ limit: 1 }); // the trail was just emptied: log one to view
    expect(event.items).toHaveLength(0);
    const id = await t.audit.log({ action: 'report.exported', actor: { type: 'system' } });
    await t.request('/audit?actorType=user&actorId=2&token=secret', { headers: ALICE });
    await t.request(`/audit/events/${id}`, { headers: ALICE });
    await t.request(`/audit/timeline?type=order&id=${orderId}`, { headers: ALICE });
    await t.request('/audit/viewer.css', { headers: ALICE });
    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['report.exported', 'audit.viewed', 'audit.viewed', 'audit.viewed']);
    const views = rows.slice(1);
    expect(views.map((row) => [row.actorType, row.actorId, row.actorDisplay, row.source, row.method, row.outcome])).toEqual(
      Array(3).fill(['user', '1', 'alice@example.com', 'http', 'GET', 'success']),
    );
    expect(views.map((row) => row.context)).toEqual([
      { view: 'search', query: { actorType: 'user', actorId: '2' } },
      { view: 'event', eventId: id },
      { view: 'timeline', target: { type: 'order', id: String(orderId) } },
    ]);
    expect(views.every((row) => (row.changes ?? []).length === 0 && row.targetType === null)).toBe(true);
    expect(await t.dataSource.getRepository(Order).find({ order: { id: 'ASC' } })).toEqual(orders);
    expect(await t.dataSource.getRepository(AuditCheckpointEntity).count()).toBe(checkpoints);
  });

  it('has no route but GET (and HEAD)', async () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const response = await t.request('/audit', { method, headers: ALICE });
      expect(response.status, method).toBe(404);
    }
  });
});

describe('audit viewer: mounting and options', () => {
  let db: TestDatabase;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await db?.drop();
  });

  @Injectable()
  class AllowAll implements CanActivate {
    canActivate(context: ExecutionContext): boolean {
      context.switchToHttp().getRequest<{ user?: unknown }>().user = { id: 'ops', email: 'ops@example.com' };
      return true;
    }
  }

  @Module({ providers: [{ provide: 'VIEWER_TITLE', useValue: 'Ops trail' }], exports: ['VIEWER_TITLE'] })
  class ConfigModule {}

  it('registerAsync: path given statically, guard and the rest from a factory; under a global prefix on Fastify', async () => {
    const t = await createTestApp({
      db,
      adapter: 'fastify',
      imports: [
        AuditViewerModule.registerAsync({
          path: 'admin/audit/',
          imports: [ConfigModule],
          inject: ['VIEWER_TITLE'],
          useFactory: (title: string) => ({ guard: new AllowAll(), title }),
        }),
      ],
      configure: (app) => void app.setGlobalPrefix('api'),
    });
    apps.push(t);
    await t.audit.log({ action: 'report.exported' });
    const page = await (await t.request('/api/admin/audit')).text();
    expect(page).toContain('<title>Search · Ops trail</title>');
    expect(page).toContain('href="/api/admin/audit/viewer.css"');
    expect(links(page).some((link) => link.startsWith('/api/admin/audit/events/'))).toBe(true);
    expect((await t.request('/api/admin/audit/viewer.css')).status).toBe(200);
    expect((await t.request('/admin/audit')).status).toBe(404);
  });

  it('with pseudonymised actor ids, a searched actor id is recorded as its pseudonym, never in clear', async () => {
    const t = await createTestApp({
      db: await createTestDatabase('sqlite'),
      adapter: 'express',
      audit: { pseudonymize: { key: randomBytes(32) } },
      imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })],
    });
    apps.push(t);
    await t.request('/orders', { method: 'POST', headers: { authorization: 'Bearer bob-token' }, json: { total: 1 } });
    const found = await (await t.request('/audit?actorType=user&actorId=2', { headers: ALICE })).text();
    expect(found).toContain('order.created');
    const refused = await t.request('/audit?actorId=2', { headers: ALICE });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('Invalid audit query: actorType is required with actorId when actor ids are pseudonymised');
    const views = (await t.rows()).filter((row) => row.action === 'audit.viewed');
    const pseudonym = t.audit.pseudonymOf({ type: 'user', id: '2' })!;
    expect(pseudonym).toMatch(/^hmac:/);
    expect(views.map((row) => [row.outcome, row.actorId === t.audit.pseudonymOf({ type: 'user', id: '1' }), row.context])).toEqual([
      ['success', true, { view: 'search', query: { actorType: 'user', actorId: pseudonym } }],
      ['failure', true, { view: 'search', query: { actorId: '[not recorded]' } }],
    ]);
  });

  it('a guard instance given to register() runs as it is', async () => {
    const t = await createTestApp({ db, adapter: 'express', imports: [AuditViewerModule.register({ path: '/trail', guard: { canActivate: () => false } })] });
    apps.push(t);
    const response = await t.request('/trail');
    expect(response.status).toBe(403);
    expectStrictHeaders(response);
  });

  it('fails start-up without a guard, naming the option (register and registerAsync)', async () => {
    const attempts = [
      AuditViewerModule.register({ path: '/audit' } as never),
      AuditViewerModule.registerAsync({ path: '/audit', useFactory: () => ({}) as never }),
      AuditViewerModule.register({ path: '/audit', guard: 'AdminGuard' } as never),
    ];
    const messages = [];
    for (const viewer of attempts) {
      const compiling = Test.createTestingModule({
        imports: [TypeOrmModule.forRoot({ ...db.options, entities: [...AuditEntities], synchronize: true }), AuditModule.forRoot(), viewer],
      }).compile();
      const error = await compiling.then(
        async (module) => {
          await module.close();
          return undefined;
        },
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(InvalidAuditOptionsError);
      messages.push((error as Error).message);
    }
    expect(messages[0]).toBe(
      'Invalid AuditViewerModule option "guard": is required: a CanActivate class or instance that lets only those allowed to read the audit trail through',
    );
    expect(messages[1]).toBe(messages[0]);
    expect(messages[2]).toBe('Invalid AuditViewerModule option "guard": must be a CanActivate class or instance (an object with canActivate()), got "AdminGuard"');
    expect(() => AuditViewerModule.register({ path: '/audit/../x', guard: AllowAll })).toThrow(
      'Invalid AuditViewerModule option "path": must be a URL path of plain segments such as "/audit" or "/admin/audit", got "/audit/../x"',
    );
  });
});
