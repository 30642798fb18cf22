import { Controller, ForbiddenException, Injectable, Post, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** A global guard of the application's own, registered before the audit module's. */
@Injectable()
class BlockListGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
    if (request.headers['x-blocked'] === '1') throw new ForbiddenException('You are blocked');
    return true;
  }
}

/** A guard that says no without an exception of its own: Nest answers 403 "Forbidden resource". */
@Injectable()
class ClosedGuard implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

/** A guard whose message is longer than any stored message. */
@Injectable()
class VerboseGuard implements CanActivate {
  canActivate(): boolean {
    throw new ForbiddenException(`Denied: ${'x'.repeat(2000)}\u0000end`);
  }
}

@Controller('vault')
class VaultController {
  @Post(':secret/open')
  @UseGuards(ClosedGuard)
  @Audited('vault.opened')
  open(): void {}

  @Post('verbose')
  @UseGuards(VerboseGuard)
  @Audited('vault.inspected')
  inspect(): void {}
}

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('denied access attempts on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [VaultController], providers: [{ provide: APP_GUARD, useClass: BlockListGuard }] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('a controller guard’s 403 on an @Audited route: one failure row; the client sees the guard’s response', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'paid', total: 3 }));
    const response = await t.request(`/admin/orders/${order.id}/refund`, { method: 'POST', headers: { authorization: 'Bearer bob-token' } });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ statusCode: 403, message: 'Admins only', error: 'Forbidden' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.refunded',
      outcome: 'failure',
      kind: 'intent',
      actorType: 'user',
      actorId: '2',
      source: 'admin',
      route: '/admin/orders/:id/refund',
      method: 'POST',
      targetType: 'order',
      targetId: String(order.id),
      reason: 'customer complaint',
      requestId: response.headers.get('x-request-id'),
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'ForbiddenException', status: 403, message: 'Admins only' });
    expect((await t.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('paid');
  });

  it('the admin allowed through: one success row with source admin', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'paid', total: 3 }));
    const response = await t.request(`/admin/orders/${order.id}/refund`, { method: 'POST', headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(201);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.refunded', outcome: 'success', source: 'admin', actorId: '1' });
  });

  it('a global guard of the application’s that rejects: still recorded against the action', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 3 }));
    const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'paid' }, headers: { 'x-blocked': '1' } });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ message: 'You are blocked' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.updated', outcome: 'failure', actorType: 'anonymous', route: '/orders/:id', source: 'http' });
    expect(rows[0]!.error).toEqual({ name: 'ForbiddenException', status: 403, message: 'You are blocked' });
  });

  it('a failed login: one failure row with status 401 that keeps the counter the guard saved', async () => {
    const user = await t.seed(() => t.dataSource.getRepository(User).save({ email: `eve-${kind}-${adapter}@x.io`, password: 'right' }));
    const response = await t.request('/auth/login', { method: 'POST', json: { email: user.email, password: 'wrong' } });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ statusCode: 401, message: 'Bad credentials', error: 'Unauthorized' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'auth.login', outcome: 'failure', route: '/auth/login', targetType: 'User', targetId: String(user.id) });
    expect(rows[0]!.error).toEqual({ name: 'UnauthorizedException', status: 401, message: 'Bad credentials' });
    expect(rows[0]!.changes).toEqual([{ entity: 'User', id: String(user.id), operation: 'update', fields: { failedLogins: { from: 0, to: 1 } } }]);
    expect(JSON.stringify(rows[0])).not.toContain('wrong');
  });

  it('a guard that returns false: the row has Nest’s message, and the path its secret parameter masked', async () => {
    const response = await t.request('/vault/open-sesame/open', { method: 'POST' });
    expect(response.status).toBe(403);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'vault.opened', outcome: 'failure', route: '/vault/:secret/open', path: '/vault/[REDACTED]/open' });
    expect(rows[0]!.error).toEqual({ name: 'ForbiddenException', status: 403, message: 'Forbidden resource' });
    expect(JSON.stringify(rows[0])).not.toContain('open-sesame');
  });

  it('a guard’s long message is stored bounded and storable', async () => {
    expect((await t.request('/vault/verbose', { method: 'POST' })).status).toBe(403);
    const [row] = await t.rows();
    const error = row!.error as { name: string; status: number; message: string };
    expect(error).toMatchObject({ name: 'ForbiddenException', status: 403 });
    expect(error.message).toMatch(/^Denied: x+$/);
    expect(error.message).toHaveLength(512);
  });

  it('an unaudited route a guard rejects leaves no intent row', async () => {
    const response = await t.request('/orders/1', { headers: { 'x-blocked': '1' } });
    expect(response.status).toBe(403);
    expect(await t.rows()).toHaveLength(0);
  });
});
