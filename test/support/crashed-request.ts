// An app instance that "dies" with a request's unit in its journal: the request's handler
// commits its change, then hangs (its instance's lease is then made old), and another
// instance recovers the unit. For tests of what recovery makes of a unit.
import { afterAll, beforeAll, expect } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, type AuditModuleOptions } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, type TestDatabase } from './test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface CrashedRequest {
  /** The instance whose request hangs after its commit. */
  readonly dead: TestApp;
  /** The hanging request's id. */
  readonly requestId: string;
  /** Makes the dead instance's lease old, starts another instance that recovers its journal rows, and returns it once they are gone. */
  recover(): Promise<TestApp>;
}

/** Before the tests of the enclosing `describe`: alice's `PATCH /stalled/orders/:id` on an instance with `actor`, committed and hanging. */
export function crashedRequest(kind: TestDatabase['kind'], actor: AuditModuleOptions['actor'], prefix: string): CrashedRequest {
  let db: TestDatabase;
  let dead: TestApp;
  let rescuer: TestApp | undefined;
  const abort = new AbortController();
  const requestId = `${prefix}-${kind}-${Date.now()}`;

  beforeAll(async () => {
    db = await sharedDatabase(kind);
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

  return {
    get dead() {
      return dead;
    },
    requestId,
    async recover() {
      await dead.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).execute();
      rescuer = await createTestApp({ db, adapter: 'express', audit: { actor, recoverAfter: 1_000 } });
      const journal = dead.dataSource.getRepository(AuditJournalEntity);
      for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
      expect(await journal.count()).toBe(0);
      return rescuer;
    },
  };
}
