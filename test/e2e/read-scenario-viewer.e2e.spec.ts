// Viewer scenarios over HTTP: guards that refuse with 401 or 403 and one that lets the
// request through, markup stored in every field a page shows, the strict headers,
// `audit.viewed` for each read, and query parameters as a hostile client sends them
// (huge, repeated, nested, other scripts, cursors altered by hand).
import { request as httpRequest } from 'node:http';
import { Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { rdsDatabase } from '../support/read-scenario-database.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const OK = { authorization: 'Bearer rds-ok' };

/** 401 without a token, 403 with another, through with `rds-ok`. */
@Injectable()
class RdsGuard implements CanActivate {
  canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: unknown }>();
    const auth = request.headers['authorization'];
    if (auth === undefined) throw new UnauthorizedException('Sign in first');
    if (auth !== OK.authorization) return Promise.resolve(false);
    request.user = { id: 77, email: 'auditor@example.com' };
    return Promise.resolve(true);
  }
}

const MARKUP = [
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(2)>',
  "' onmouseover='alert(3)",
  'javascript:alert(4)',
  '<svg/onload=alert(5)>',
  '`${alert(6)}`',
];

/** A raw GET (no URL normalisation by fetch), with its status, headers and body. */
function rawGet(url: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, method: 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

describe.each(databases().flatMap((kind) => ADAPTERS.map((adapter) => [kind, adapter] as const)))('viewer scenarios on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;
  const ids: string[] = [];

  beforeAll(async () => {
    db = (await rdsDatabase(kind)).db;
    t = await createTestApp({ db, adapter, imports: [AuditViewerModule.register({ path: '/rds-audit', guard: RdsGuard, pageSize: 3 })] });
    for (const [i, value] of MARKUP.entries()) {
      ids.push(
        await t.audit.log({
          action: 'doc.marked',
          reason: value,
          actor: { type: 'user', id: value, display: value },
          target: { type: 'doc', id: value },
          context: { [value]: value, i },
        }),
      );
    }
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const viewed = async (): Promise<AuditLogEntity[]> => (await t.rows()).filter((row) => row.action === 'audit.viewed');

  it('refuses with the guard\'s 401 or 403, strict headers and no trail data; lets the allowed request through', async () => {
    for (const [headers, status] of [
      [{}, 401],
      [{ authorization: 'Bearer other' }, 403],
    ] as Array<[Record<string, string>, number]>) {
      for (const path of ['/rds-audit', `/rds-audit/events/${ids[0]}`, '/rds-audit/timeline?type=doc&id=x']) {
        const response = await t.request(path, { headers });
        expect(response.status, path).toBe(status);
        expect(response.headers.get('content-security-policy'), path).toBe(CSP);
        const body = await response.text();
        expect(body).not.toContain('doc.marked');
        expect(body).not.toContain('alert');
      }
    }
    const allowed = await t.request('/rds-audit?action=doc.marked', { headers: OK });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('content-security-policy')).toBe(CSP);
    expect(allowed.headers.get('x-frame-options')).toBe('DENY');
  });

  it('shows markup stored in reason, actor, target and context as text on every page', async () => {
    const pages: Array<[string, string]> = [];
    pages.push(['search', await (await t.request('/rds-audit?action=doc.marked', { headers: OK })).text()]);
    for (const id of ids) pages.push([`event ${id}`, await (await t.request(`/rds-audit/events/${id}`, { headers: OK })).text()]);
    for (const value of MARKUP) {
      const response = await t.request(`/rds-audit/timeline?${new URLSearchParams({ type: 'doc', id: value })}`, { headers: OK });
      expect(response.status, value).toBe(200);
      pages.push([`timeline ${value}`, await response.text()]);
    }
    for (const [name, page] of pages) {
      expect(page, name).not.toMatch(/<script|<img|<svg|href="javascript:/i);
      // No event handler attribute in any tag, once the quoted attribute values are set aside.
      expect(page.replace(/"[^"]*"/g, '""'), name).not.toMatch(/<[^>]*\son\w+\s*=/i);
      expect(page, name).not.toMatch(/href="[^"]*[<>'`][^"]*"/);
      // Every attribute value is quoted and holds no raw quote of its own.
      expect(page, name).not.toMatch(/=\s*'[^']*'/);
    }
    // The event page shows the values back, escaped.
    const event = pages.find(([name]) => name === `event ${ids[1]}`)![1];
    expect(event).toContain('&quot;&gt;&lt;img src=x onerror=alert(2)&gt;');
    // Each timeline shows the event about that target.
    for (const [i, value] of MARKUP.entries()) {
      const timeline = pages.find(([name]) => name === `timeline ${value}`)![1];
      expect(timeline, value).toContain(`/rds-audit/events/${ids[i]}`);
    }
  });

  it('records audit.viewed for each page read, refused or not, with what was viewed', async () => {
    const before = (await viewed()).length;
    await t.request('/rds-audit?actorType=user&actorId=%C3%A9l%C3%A8ve&apiKey=secret', { headers: OK });
    await t.request(`/rds-audit/events/${ids[2]}`, { headers: OK });
    await t.request('/rds-audit/timeline?type=doc&id=%E2%9C%93', { headers: OK });
    await t.request('/rds-audit', { headers: { authorization: 'Bearer other' } });
    await t.request('/rds-audit?from=2026-02-30', { headers: OK });
    const rows = (await viewed()).slice(before);
    expect(rows.map((row) => [row.outcome, row.actorId ?? null])).toEqual([
      ['success', '77'],
      ['success', '77'],
      ['success', '77'],
      ['failure', null],
      ['failure', '77'],
    ]);
    expect(rows.slice(0, 3).map((row) => row.context)).toEqual([
      { view: 'search', query: { actorType: 'user', actorId: 'élève' } },
      { view: 'event', eventId: ids[2] },
      { view: 'timeline', target: { type: 'doc', id: '✓' } },
    ]);
    expect(JSON.stringify(rows.map((row) => row.context))).not.toContain('secret');
    expect(rows[3]!.error).toMatchObject({ status: 403 });
  });

  it('answers fuzzed query parameters with a 400 page naming the problem, never a 500', async () => {
    const huge = 'x'.repeat(100_000);
    const cases = [
      `/rds-audit?actorId=${huge}`,
      `/rds-audit?cursor=${huge}`,
      '/rds-audit?actorId=a&actorId=b',
      '/rds-audit?from=2026-02-30',
      '/rds-audit?from=%00',
      '/rds-audit?to=9999-12-31T23:59:59.999-01:00',
      '/rds-audit/timeline?type=doc&id=a&id=b',
      '/rds-audit/timeline?type[]=doc&id=a',
      `/rds-audit/timeline?type=doc&id=${huge}`,
      '/rds-audit/events/%E2%9C%93',
    ];
    const wrong: string[] = [];
    for (const path of cases) {
      const response = await rawGet(t.url, path, OK);
      const said = /<p class="error"[^>]*>([^<]*)</.exec(response.body)?.[1] ?? response.body.slice(0, 120);
      if (response.status !== 400 || response.headers['content-security-policy'] !== CSP || !response.body.includes('Invalid audit query')) {
        wrong.push(`${path.slice(0, 60)} -> ${response.status}: ${said.slice(0, 160)}`);
      }
    }
    expect(wrong).toEqual([]);
    // Text in other scripts is a search like any other.
    for (const path of ['/rds-audit?actorId=%E2%9C%93%F0%9F%91%A9', '/rds-audit?action=%D8%B9%D8%B1%D8%A8%D9%8A', '/rds-audit?targetType=doc&targetId=%E2%80%AE']) {
      const response = await rawGet(t.url, path, OK);
      expect(response.status, path).toBe(200);
    }
  });

  it('answers a cursor whose event id was altered by hand with a 400 page, never a 500', async () => {
    const page = await (await t.request('/rds-audit?action=doc.marked', { headers: OK })).text();
    const cursor = /cursor=([A-Za-z0-9_-]+)/.exec(page)?.[1];
    expect(cursor).toBeTruthy();
    const [at, , filters] = JSON.parse(Buffer.from(cursor!, 'base64url').toString('utf8')) as [string, string, string];
    const altered = Buffer.from(JSON.stringify([at, 'not-an-id', filters])).toString('base64url');
    const response = await t.request(`/rds-audit?action=doc.marked&cursor=${altered}`, { headers: OK });
    const body = await response.text();
    expect({ status: response.status, csp: response.headers.get('content-security-policy') }, body.slice(0, 300)).toEqual({ status: 400, csp: CSP });
    expect(body).toContain('cursor');
  });

  it('shows an event whose id is written in capitals as it shows it in lower case', async () => {
    const lower = await t.request(`/rds-audit/events/${ids[0]}`, { headers: OK });
    const upper = await t.request(`/rds-audit/events/${ids[0]!.toUpperCase()}`, { headers: OK });
    expect(lower.status).toBe(200);
    expect(upper.status).toBe(200);
  });

  it('keeps its links on this host when the path starts with two slashes', async () => {
    const response = await rawGet(t.url, '//rds-audit?action=doc.marked', OK);
    if (response.status !== 200) return; // not routed: nothing to check
    const hrefs = [...response.body.matchAll(/(?:href|action)="([^"]*)"/g)].map((m) => m[1]!);
    expect(hrefs.filter((h) => h.startsWith('//'))).toEqual([]);
  });
});
