import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, AuditLogEntity, type AuditRequest } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The actor resolver of docs/configuration.md: it only reads `request.user`, like the default one. */
const actor = (request: AuditRequest) => {
  const user = (request as { user?: { id: number; email: string } }).user;
  return user ? { type: 'user', id: String(user.id), display: user.email } : undefined;
};

describe.each(databases())('recovery of a crashed request’s unit with an actor resolver of the app’s own, on %s', (kind) => {
  let db: TestDatabase;
  let dead: TestApp;
  let rescuer: TestApp | undefined;
  const abort = new AbortController();
  const requestId = `crashed-${kind}-${Date.now()}`;

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

  it('the recovered event names alice, as the journal could (her user was known at the commit)', async () => {
    await dead.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).execute();
    rescuer = await createTestApp({ db, adapter: 'express', audit: { actor, recoverAfter: 1_000 } });
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count()).toBe(0);

    const rows = await dead.dataSource.getRepository(AuditLogEntity).find({ where: { requestId } });
    expect(rows.map((row) => ({ action: row.action, outcome: row.outcome, actorType: row.actorType, actorId: row.actorId }))).toEqual([
      { action: 'order.repriced', outcome: 'unknown', actorType: 'user', actorId: '1' },
    ]);
  });
});
