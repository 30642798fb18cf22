// The viewer against hostile input: text the database cannot take (a NUL on PostgreSQL)
// and times outside what every database stores are refused with a 400 page naming the
// field (and recorded as failed views), never a 500; markup stored in any field of an
// event is shown as text on every page, whose links all stay under the viewer's path.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ALICE = { authorization: 'Bearer alice-token' };

describe.each(databases())('hostile input to the audit viewer on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })] });
    await t.audit.log({ action: 'order.viewed', actor: { type: 'user', id: '1' }, target: { type: 'order', id: '1' } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('refuses a NUL character in a search field or a timeline target with a 400 page, not a 500', async () => {
    const cases: Array<[string, string]> = [
      ['/audit?action=order.viewed%00', 'Invalid audit query: action contains a NUL character'],
      ['/audit?actorType=user&actorId=1%00', 'Invalid audit query: actorId contains a NUL character'],
      ['/audit?requestId=%00', 'Invalid audit query: requestId contains a NUL character'],
      ['/audit/timeline?type=order&id=1%00', 'Invalid audit query: id contains a NUL character'],
    ];
    for (const [path, message] of cases) {
      await t.clearAudit();
      const response = await t.request(path, { headers: ALICE });
      expect(response.status, path).toBe(400);
      expect(await response.text(), path).toContain(message);
      const views = (await t.rows()).filter((row) => row.action === 'audit.viewed');
      expect(views.map((row) => [row.outcome, (row.error as { name?: string } | null)?.name]), path).toEqual([['failure', 'InvalidAuditQueryError']]);
    }
  });

  it('refuses a time outside the years 0001 to 9999 (UTC) with a 400 page, not a 500', async () => {
    const cases: Array<[string, string]> = [
      ['/audit?from=0000-01-01T00:00', 'Invalid audit query: from is outside the years 0001 to 9999'],
      ['/audit?to=9999-12-31T23:59:59.999-23:59', 'Invalid audit query: to is outside the years 0001 to 9999'],
    ];
    for (const [path, message] of cases) {
      const response = await t.request(path, { headers: ALICE });
      expect(response.status, path).toBe(400);
      expect(await response.text(), path).toContain(message);
    }
    // The edges themselves are fine.
    expect((await t.request('/audit?from=0001-01-01T00:00&to=9999-12-31T23:59:59.999', { headers: ALICE })).status).toBe(200);
  });

  it('find() refuses such a time with InvalidAuditQueryError too', async () => {
    await expect(t.audit.find({ from: new Date('0000-06-01T00:00:00Z') })).rejects.toThrow('Invalid audit query: from is outside the years 0001 to 9999');
    await expect(t.audit.find({ to: '+010000-01-01T00:00:00Z' })).rejects.toThrow('Invalid audit query: to is outside the years 0001 to 9999');
  });
});

describe('hostile stored values in the audit viewer', () => {
  let db: TestDatabase;
  let t: TestApp;
  const XSS = '"><img src=x onerror=alert(1)><script>alert(2)</script>';
  let id: string;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter: 'fastify', imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })] });
    const logged = await t.audit.log({ action: 'order.viewed', actor: { type: 'user', id: '1' }, target: { type: 'order', id: '1' } });
    // Whatever reached the table, however it got there (audit_log takes inserts only).
    const repository = t.dataSource.getRepository(AuditLogEntity);
    const row = await repository.findOneByOrFail({ id: logged });
    id = randomUUID();
    await repository.insert({
      ...row,
      id,
      actorType: XSS,
      actorId: `javascript:alert(3)${XSS}`,
      actorDisplay: XSS,
      targetType: `javascript:${XSS}`,
      targetId: `javascript:alert(4)//${XSS}`,
      action: XSS,
      source: XSS,
      outcome: XSS,
      kind: XSS,
      reason: XSS,
      path: `/x${XSS}`,
      userAgent: XSS,
      requestId: XSS,
      error: { name: XSS, message: XSS },
      context: { [XSS]: XSS },
      changes: [{ entity: XSS, id: XSS, operation: XSS, table: XSS, fields: { [XSS]: { from: XSS, to: XSS }, [`${XSS}2`]: { added: [XSS], removed: [XSS] } } }],
    } as never);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** The page's tags and attribute names: only the viewer's own, whatever the trail holds. */
  function expectOnlyOwnMarkup(page: string): void {
    const tags = new Set([...page.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9-]*)/g)].map((match) => match[1]!.toLowerCase()));
    const own = ['html', 'head', 'meta', 'title', 'link', 'body', 'header', 'h1', 'h2', 'h3', 'a', 'span', 'main', 'form', 'label', 'input', 'select', 'option', 'datalist', 'div', 'button', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'p', 'nav', 'dl', 'dt', 'dd', 'pre', 'code', 'section', 'ol', 'li', 'strong', 'em'];
    expect([...tags].filter((tag) => !own.includes(tag))).toEqual([]);
    const attributes = new Set([...page.matchAll(/<[a-zA-Z][^>]*>/g)].flatMap((tag) => [...tag[0].replace(/"[^"]*"/g, '""').matchAll(/\s([a-zA-Z-]+)(?==|[\s>])/g)].map((match) => match[1]!.toLowerCase())));
    expect([...attributes].filter((name) => name.startsWith('on') || name === 'style' || name === 'srcdoc' || name === 'src')).toEqual([]);
    for (const link of [...page.matchAll(/(?:href|action)="([^"]*)"/g)].map((match) => match[1]!)) expect(link).toMatch(/^\/audit(\/|\?|$)/);
  }

  it('shows them as text on the event page, the search page and the timeline', async () => {
    const pages = [
      `/audit/events/${id}`,
      `/audit?action=${encodeURIComponent(XSS)}&source=${encodeURIComponent(XSS)}`,
      `/audit/timeline?type=${encodeURIComponent(`javascript:${XSS}`)}&id=${encodeURIComponent(`javascript:alert(4)//${XSS}`)}`,
      `/audit?actorType=${encodeURIComponent(XSS)}&actorId=${encodeURIComponent(XSS)}&requestId=${encodeURIComponent(XSS)}&from=${encodeURIComponent(XSS)}`,
    ];
    for (const path of pages) {
      const response = await t.request(path, { headers: ALICE });
      expect([200, 400], path).toContain(response.status);
      const page = await response.text();
      expectOnlyOwnMarkup(page);
    }
    const event = await (await t.request(`/audit/events/${id}`, { headers: ALICE })).text();
    expect(event).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
    const search = await (await t.request(`/audit?action=${encodeURIComponent(XSS)}`, { headers: ALICE })).text();
    expect(search).toContain('/audit/events/' + id); // found, and listed
  });
});

describe('audit.viewed with pseudonymised actor ids and recordQueryString', () => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { pseudonymize: { key: randomBytes(32) }, recordQueryString: true },
      imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  // The request's recorded path kept the query string as sent, so the clear actor id
  // searched for landed in the trail beside its pseudonym.
  it('never records a searched actor id in clear', async () => {
    await t.request('/audit?actorType=user&actorId=clear-id-42', { headers: ALICE });
    const views = (await t.rows()).filter((row) => row.action === 'audit.viewed');
    expect(views).toHaveLength(1);
    expect((views[0]!.context as { query: { actorId: string } }).query.actorId).toMatch(/^hmac:/);
    expect(JSON.stringify(views[0])).not.toContain('clear-id-42');
    expect(views[0]!.path).toBe('/audit?actorType=user&actorId=[REDACTED]');
  });
});
