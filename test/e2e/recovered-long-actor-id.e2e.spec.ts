import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, AuditLogEntity, AuditService, type AuditRequest } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An actor id longer than `audit_log.actor_id` holds (an external identity's subject, say). */
const longId = (id: number): string => `tenant-${'t'.repeat(300)}-${id}`;

/** An actor resolver of the app's own, giving ids past 255 characters. */
const actor = (request: AuditRequest) => {
  const user = (request as { user?: { id: number; email: string } }).user;
  return user ? { type: 'user', id: longId(user.id), display: user.email } : undefined;
};

describe.each(databases())('recovery of a crashed request’s unit whose actor id is past 255 characters, on %s', (kind) => {
  let db: TestDatabase;
  let dead: TestApp;
  let rescuer: TestApp | undefined;
  const abort = new AbortController();
  const requestId = `crashed-long-${kind}-${Date.now()}`;

  beforeAll(async () => {
    db = await sharedDatabase(kind);
    // The instance that "dies": its handler commits, then hangs.
    dead = await createTestApp({ db, adapter: 'express', controllers: [StalledController], audit: { actor, recoverAfter: 60_000, shutdownTimeout: 200 } });
    const orderId = (await dead.seed(() => dead.dataSource.getRepository(Order).save({ status: 'new', total: 10 }))).id;
    dead
      .request(`/stalled/orders/${orderId}`, { method: 'PATCH', signal: abort.signal, headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } })
      .catch(() => undefined);
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) < 2; i++) await sleep(50);
  });
  afterAll(async () => {
    abort.abort();
    await rescuer?.close().catch(() => undefined);
    await dead?.close().catch(() => undefined);
    await db?.drop();
  });

  it('the recovered event stores the actor id as a direct write would, and find({ actorId }) with the id given finds it', async () => {
    await dead.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).execute();
    rescuer = await createTestApp({ db, adapter: 'express', audit: { actor, recoverAfter: 1_000 } });
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count()).toBe(0);

    const rows = await dead.dataSource.getRepository(AuditLogEntity).find({ where: { requestId } });
    expect(rows.map((row) => [row.action, row.outcome, row.actorType])).toEqual([['order.repriced', 'unknown', 'user']]);
    expect(rows[0]!.actorId!.length).toBeLessThanOrEqual(255);
    expect(rows[0]!.actorId).toMatch(/^tenant-t+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);

    const audit = rescuer.app.get(AuditService);
    const found = await audit.find({ actorType: 'user', actorId: longId(1), requestId });
    expect(found.items.map((event) => event.action)).toEqual(['order.repriced']);

    // The same actor's event written directly (no crash) stores the same id.
    const orderId = (await rescuer.seed(() => rescuer!.dataSource.getRepository(Order).save({ status: 'new', total: 5 }))).id;
    const response = await rescuer.request(`/orders/${orderId}`, { method: 'PATCH', json: { status: 'paid' }, headers: { authorization: 'Bearer alice-token' } });
    expect(response.status).toBe(200);
    const direct = (await rescuer.rows()).filter((row) => row.requestId !== requestId && row.actorId?.startsWith('tenant-'));
    expect(direct.length).toBeGreaterThan(0);
    expect(direct.map((row) => row.actorId)).toEqual(direct.map(() => rows[0]!.actorId));
  });
});
