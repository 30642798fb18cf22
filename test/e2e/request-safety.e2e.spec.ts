import { randomBytes } from 'node:crypto';
import { Controller, HttpCode, Logger, Post } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Audited, AuditLogEntity } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(ADAPTERS)('trustProxy over %s', (adapter) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  async function ipRecorded(trustProxy: unknown, forwardedFor: string): Promise<string | null> {
    const t = await createTestApp({ db: await createTestDatabase('sqlite'), adapter, audit: { trustProxy: trustProxy as never } });
    apps.push(t);
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'x' }, headers: { 'x-forwarded-for': forwardedFor } });
    expect(response.status).toBe(200);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    return rows[0]!.ip;
  }

  it('records the socket address by default, whatever X-Forwarded-For says', async () => {
    expect(await ipRecorded(undefined, '1.2.3.4')).toBe('127.0.0.1');
  });

  it('honours X-Forwarded-For through a trusted hop', async () => {
    expect(await ipRecorded(true, '1.2.3.4')).toBe('1.2.3.4');
    expect(await ipRecorded('loopback', '1.2.3.4')).toBe('1.2.3.4');
    expect(await ipRecorded(['127.0.0.0/8'], '1.2.3.4')).toBe('1.2.3.4');
  });

  it('stops at the first untrusted hop, so a client cannot forge its address', async () => {
    // The client (9.9.9.9) forged "1.2.3.4"; only the loopback proxy is trusted.
    expect(await ipRecorded('loopback', '1.2.3.4, 9.9.9.9')).toBe('9.9.9.9');
    expect(await ipRecorded(1, '1.2.3.4, 9.9.9.9')).toBe('9.9.9.9');
    expect(await ipRecorded(2, '1.2.3.4, 9.9.9.9')).toBe('1.2.3.4');
  });

  it('never records a value that is not an IP address', async () => {
    expect(await ipRecorded(true, "'; DROP TABLE audit_log; --")).toBe('127.0.0.1');
  });

  it('reads an oversized X-Forwarded-For from its right end, where the trusted proxies appended their hops', async () => {
    // The client wrote a long list of its choosing; the trusted proxies appended the real hops.
    const forged = Array.from({ length: 400 }, () => '1.2.3.4').join(', ');
    expect(await ipRecorded(1, `${forged}, 9.9.9.9`)).toBe('9.9.9.9');
    expect(await ipRecorded('loopback', `${forged}, 9.9.9.9`)).toBe('9.9.9.9');
    expect(await ipRecorded(['loopback', '10.0.0.0/8'], `${forged}, 9.9.9.9, 10.0.0.7`)).toBe('9.9.9.9');
    expect(await ipRecorded(1, `${'x'.repeat(5000)}, 9.9.9.9`)).toBe('9.9.9.9');
  });
});

describe.each(ADAPTERS)('the framework’s own proxy setting over %s', (adapter) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  /** An app whose framework trusts the loopback proxy: Express's `trust proxy`, Fastify's `trustProxy`. */
  async function ipRecorded(trustProxy: unknown, forwardedFor: string): Promise<string | null> {
    const t = await createTestApp({
      db: await createTestDatabase('sqlite'),
      adapter,
      audit: trustProxy === undefined ? {} : { trustProxy: trustProxy as never },
      fastify: { trustProxy: 'loopback' },
      configure: (app) => {
        if (adapter === 'express') (app as NestExpressApplication).set('trust proxy', 'loopback');
      },
    });
    apps.push(t);
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'x' }, headers: { 'x-forwarded-for': forwardedFor } });
    expect(response.status).toBe(200);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    return rows[0]!.ip;
  }

  it('without trustProxy, the recorded IP is the socket address, whatever proxy the framework trusts', async () => {
    expect(await ipRecorded(undefined, '1.2.3.4, 9.9.9.9')).toBe('127.0.0.1');
  });

  it('trustProxy, when given, wins over the framework’s setting', async () => {
    expect(await ipRecorded('loopback', '1.2.3.4, 9.9.9.9')).toBe('9.9.9.9');
    expect(await ipRecorded(false, '1.2.3.4, 9.9.9.9')).toBe('127.0.0.1');
    expect(await ipRecorded(2, '1.2.3.4, 9.9.9.9')).toBe('1.2.3.4');
  });
});

/** Routes whose parameters carry secrets, and some whose parameters do not. */
@Controller()
class SecretPathController {
  @Post('auth/reset/:token')
  @HttpCode(200)
  @Audited('password.reset')
  reset(): { ok: true } {
    return { ok: true };
  }

  @Post('invites/:code/accept')
  @HttpCode(200)
  @Audited('invite.accepted')
  accept(): { ok: true } {
    return { ok: true };
  }

  @Post('users/:userId/sessions/:sessionToken/revoke')
  @HttpCode(200)
  @Audited('session.revoked')
  revoke(): { ok: true } {
    return { ok: true };
  }

  @Post('posts/:slug/publish')
  @HttpCode(200)
  @Audited('post.published')
  publish(): { ok: true } {
    return { ok: true };
  }
}

describe.each(ADAPTERS)('secret path parameters over %s', (adapter) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  async function recorded(audit: Record<string, unknown>, paths: string[]): Promise<Array<{ path: string | null; route: string | null }>> {
    const t = await createTestApp({ db: await createTestDatabase('sqlite'), adapter, audit, controllers: [SecretPathController] });
    apps.push(t);
    for (const path of paths) expect((await t.request(path, { method: 'POST' })).status).toBe(200);
    return (await t.rows()).map((row) => ({ path: row.path, route: row.route }));
  }

  it('masks the parameters whose names look secret, by default', async () => {
    expect(
      await recorded({}, ['/auth/reset/s3cr3t-value', '/invites/INV-42/accept', '/users/7/sessions/sess-abc/revoke', '/auth/reset/a%20b', '/posts/hello/publish']),
    ).toEqual([
      { path: '/auth/reset/[REDACTED]', route: '/auth/reset/:token' },
      { path: '/invites/[REDACTED]/accept', route: '/invites/:code/accept' },
      { path: '/users/7/sessions/[REDACTED]/revoke', route: '/users/:userId/sessions/:sessionToken/revoke' },
      { path: '/auth/reset/[REDACTED]', route: '/auth/reset/:token' },
      { path: '/posts/hello/publish', route: '/posts/:slug/publish' },
    ]);
  });

  it('masks them with recordQueryString too, where the query string is kept', async () => {
    expect(await recorded({ recordQueryString: true }, ['/auth/reset/s3cr3t-value?lang=en'])).toEqual([
      { path: '/auth/reset/[REDACTED]?lang=en', route: '/auth/reset/:token' },
    ]);
  });

  it('secretPathParams replaces the list of secret-looking names; the redactor’s names stay secret', async () => {
    expect(await recorded({ secretPathParams: ['slug'] }, ['/posts/hello/publish', '/invites/INV-42/accept', '/auth/reset/s3cr3t-value'])).toEqual([
      { path: '/posts/[REDACTED]/publish', route: '/posts/:slug/publish' },
      { path: '/invites/INV-42/accept', route: '/invites/:code/accept' },
      { path: '/auth/reset/[REDACTED]', route: '/auth/reset/:token' },
    ]);
  });

  it('recordPath: false leaves the path out; the route pattern is kept', async () => {
    expect(await recorded({ recordPath: false }, ['/posts/hello/publish', '/auth/reset/s3cr3t-value'])).toEqual([
      { path: null, route: '/posts/:slug/publish' },
      { path: null, route: '/auth/reset/:token' },
    ]);
  });
});

describe.each(databases())('storage failure on %s', (kind) => {
  let db: TestDatabase;
  let app: TestApp | undefined;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await db.drop();
  });

  async function breakAuditTable(app: TestApp): Promise<void> {
    const runner = app.dataSource.createQueryRunner();
    await runner.dropTable(app.dataSource.getMetadata(AuditLogEntity).tablePath);
    await runner.release();
  }

  it('fails closed by default: the request fails and the logger says why', async () => {
    const errors = vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const t = (app = await createTestApp({ db, adapter: 'express' }));
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    await breakAuditTable(t);
    const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'paid' } });
    expect(response.status).toBe(500);
    expect(errors.mock.calls.map((call) => String(call[0])).join('\n')).toMatch(/Could not store 1 audit event\(s\).*fail-closed/);
    await t.dataSource.synchronize(); // recreate the table: nothing of the failed request is in it
    expect(await t.dataSource.getRepository(AuditLogEntity).count()).toBe(0);
  });

  it('fails open when asked: the request succeeds and the logger says why', async () => {
    const errors = vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const t = (app = await createTestApp({ db, adapter: 'fastify', audit: { failOpen: true } }));
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    await breakAuditTable(t);
    const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'paid' } });
    expect(response.status).toBe(200);
    expect(((await response.json()) as Order).status).toBe('paid');
    expect(errors.mock.calls.map((call) => String(call[0])).join('\n')).toMatch(/Could not store 1 audit event\(s\).*fail-open/);

    // Outside any unit of work the fallback row is written in the caller's transaction:
    // failing open, it must not take the caller's change down with it.
    const saved = await t.dataSource.transaction((manager) => manager.save(Order, { status: 'kept' }));
    expect((await t.dataSource.getRepository(Order).findOneByOrFail({ id: saved.id })).status).toBe('kept');
    await t.dataSource.synchronize();
  });

  it('fails closed outside a unit of work: the change rolls back with the audit write', async () => {
    vi.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const t = (app = await createTestApp({ db, adapter: 'express' }));
    await breakAuditTable(t);
    const before = await t.dataSource.getRepository(Order).count();
    await expect(t.dataSource.transaction((manager) => manager.save(Order, { status: 'lost' }))).rejects.toThrow(/Could not store 1 audit event/);
    expect(await t.dataSource.getRepository(Order).count()).toBe(before);
    await t.dataSource.synchronize();
  });
});

describe.each(ADAPTERS)('hostile request data over %s', (adapter) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ db: await createTestDatabase('sqlite'), adapter, audit: { recordBody: true } });
  });
  afterAll(() => t.close());

  it('a forged X-Forwarded-For, a 64 KB header, a bad request id and ?token= in the URL: request fine, row bounded and clean', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    const response = await t.request(`/orders/${order.id}?token=secret-token-value&page=2`, {
      method: 'PATCH',
      json: { status: 'paid', password: 'hunter2', card: { cvv: '123', last4: '4242' } },
      headers: {
        'x-forwarded-for': '6.6.6.6',
        'user-agent': 'A'.repeat(64 * 1024),
        'x-request-id': 'bad id with spaces;' + 'x'.repeat(1024),
      },
    });
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.ip).toBe('127.0.0.1');
    expect(row.userAgent!.length).toBe(512);
    expect(row.requestId).toBe(requestId);
    expect(row.path).toBe(`/orders/${order.id}`);
    expect(row.context).toEqual({ body: { status: 'paid', password: '[REDACTED]', card: { cvv: '[REDACTED]', last4: '4242' } } });
    const stored = JSON.stringify(row);
    expect(stored).not.toMatch(/secret-token-value|hunter2|6\.6\.6\.6|bad id/);
    expect(stored.length).toBeLessThan(4096);
  });

  it('with recordQueryString, keeps the query but masks secret parameters', async () => {
    const app = await createTestApp({ db: await createTestDatabase('sqlite'), adapter, audit: { recordQueryString: true } });
    try {
      const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new' }));
      await app.request(`/orders/${order.id}?access_token=abc&page=2&actorId=7`, { method: 'PATCH', json: { status: 'x' } });
      const [row] = await app.rows();
      // Without pseudonymisation, an actor id in the query string is no secret.
      expect(row!.path).toBe(`/orders/${order.id}?access_token=[REDACTED]&page=2&actorId=7`);
      expect(row!.context).toBeNull(); // bodies are not stored unless asked
    } finally {
      await app.close();
    }
  });

  it('with recordQueryString, masks the parameters a route parameter of that name would be masked for (an OAuth code, an API key, a signature)', async () => {
    const app = await createTestApp({ db: await createTestDatabase('sqlite'), adapter, audit: { recordQueryString: true } });
    try {
      const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new' }));
      await app.request(`/orders/${order.id}?state=abc&code=OAUTH-CODE-1&key=API-KEY-2&X-Amz-Signature=SIG-3&page=2`, { method: 'PATCH', json: { status: 'x' } });
      const [row] = await app.rows();
      expect(row!.path).toBe(`/orders/${order.id}?state=abc&code=[REDACTED]&key=[REDACTED]&X-Amz-Signature=[REDACTED]&page=2`);
    } finally {
      await app.close();
    }
  });

  it('with recordQueryString and pseudonymised actor ids, masks actor ids in the query too', async () => {
    const app = await createTestApp({
      db: await createTestDatabase('sqlite'),
      adapter,
      audit: { recordQueryString: true, pseudonymize: { key: randomBytes(32) } },
    });
    try {
      const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new' }));
      await app.request(`/orders/${order.id}?actor_id=ann-17&page=2&ActorId=ann-17`, { method: 'PATCH', json: { status: 'x' } });
      const [row] = await app.rows();
      expect(row!.path).toBe(`/orders/${order.id}?actor_id=[REDACTED]&page=2&ActorId=[REDACTED]`);
      expect(JSON.stringify(row)).not.toContain('ann-17');
    } finally {
      await app.close();
    }
  });
});
