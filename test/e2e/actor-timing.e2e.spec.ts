// Whose request it was: the actor is resolved as the handler begins (after guards and
// interceptors) and again when the events are built. A handler that signs its user out
// (`req.logout()` sets `req.user` to null) is still that user's; a handler that signs a
// user in is the new user's.
import { Controller, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, type AuditRequest } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('session')
@UseGuards(TokenGuard)
class SessionController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** A logout as Passport does it, after a change of the user's (e.g. revoking the user's open carts). */
  @Post('logout')
  @HttpCode(204)
  @Audited('auth.logout')
  async logout(@Req() request: { user?: unknown }): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'revoked', note: 'logout' }));
    request.user = null;
  }

  /** The session ended first, then the change. */
  @Post('logout-first')
  @HttpCode(204)
  @Audited('auth.logout')
  async logoutFirst(@Req() request: { user?: unknown }): Promise<void> {
    request.user = null;
    await this.orders.save(this.orders.create({ status: 'revoked', note: 'logout' }));
  }

  /** A login: anonymous until the handler signs the user in. */
  @Post('login')
  @HttpCode(204)
  @Audited('auth.login')
  async login(@Req() request: { user?: unknown }): Promise<void> {
    request.user = { id: 2, email: 'bob@example.com' };
    await this.orders.save(this.orders.create({ status: 'new', note: 'login' }));
  }
}

/** The actor resolver of docs/configuration.md (an app's own: not known to be free of side effects). */
const ownResolver = (request: AuditRequest) => {
  const user = (request as { user?: { id: number; email: string } | null }).user;
  return user ? { type: 'user', id: String(user.id), display: user.email } : undefined;
};

describe.each(databases())('the actor of a handler that changes who is signed in, on %s', (kind) => {
  let db: TestDatabase;
  const apps: Record<string, TestApp> = {};

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    apps['default resolver'] = await createTestApp({ db, adapter: 'express', controllers: [SessionController] });
    apps['own resolver'] = await createTestApp({ db, adapter: 'fastify', controllers: [SessionController], audit: { actor: ownResolver } });
  });
  afterAll(async () => {
    for (const app of Object.values(apps)) await app.close();
    await db?.drop();
  });
  beforeEach(async () => {
    // SQLite: each app has a memory database of its own.
    for (const app of Object.values(apps)) await app.clearAudit();
  });

  const actors = async (t: TestApp) =>
    (await t.rows()).map((row) => ({ action: row.action, actorType: row.actorType, actorId: row.actorId, changes: row.changes?.length }));

  it.each(['default resolver', 'own resolver'])('%s: alice’s logout is recorded as alice’s, whether the change comes before or after it', async (name) => {
    const t = apps[name]!;
    for (const path of ['/session/logout', '/session/logout-first']) {
      const response = await t.request(path, { method: 'POST', headers: { authorization: 'Bearer alice-token' } });
      expect(response.status).toBe(204);
    }
    expect(await actors(t)).toEqual([
      { action: 'auth.logout', actorType: 'user', actorId: '1', changes: 1 },
      { action: 'auth.logout', actorType: 'user', actorId: '1', changes: 1 },
    ]);
  });

  it.each(['default resolver', 'own resolver'])('%s: a login is the signed-in user’s', async (name) => {
    const t = apps[name]!;
    const response = await t.request('/session/login', { method: 'POST' });
    expect(response.status).toBe(204);
    expect(await actors(t)).toEqual([{ action: 'auth.login', actorType: 'user', actorId: '2', changes: 1 }]);
  });
});
