import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(databases())('journal recovery on %s', (kind) => {
  let db: TestDatabase;
  let dead: TestApp;
  const rescuers: TestApp[] = [];
  const aborts: AbortController[] = [];
  let orderId: number;
  let intentRequestId: string;
  let untrackedRequestId: string;

  beforeAll(async () => {
    db = await sharedDatabase(kind);
    // The instance that "dies": its handlers commit, then hang; its lease is then aged.
    dead = await createTestApp({
      db,
      adapter: 'express',
      controllers: [StalledController],
      audit: { recoverAfter: 60_000, shutdownTimeout: 200 },
    });
    orderId = (await dead.seed(() => dead.dataSource.getRepository(Order).save({ status: 'new', total: 10 }))).id;
    intentRequestId = `stalled-intent-${kind}`;
    untrackedRequestId = `stalled-plain-${kind}`;
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    let expected = 0;
    for (const [path, requestId, rows] of [
      [`/stalled/orders/${orderId}`, intentRequestId, 2],
      [`/stalled/untracked/${orderId}`, untrackedRequestId, 1],
    ] as const) {
      const abort = new AbortController();
      aborts.push(abort);
      dead
        .request(path, { method: 'PATCH', signal: abort.signal, headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } })
        .catch(() => undefined);
      expected += rows;
      for (let i = 0; i < 100 && (await journal.count()) < expected; i++) await sleep(50);
    }
  });

  afterAll(async () => {
    for (const abort of aborts) abort.abort();
    for (const app of rescuers) await app.close().catch(() => undefined);
    await dead?.close().catch(() => undefined);
    await db?.drop();
  });

  it('the dead instance left committed changes in the journal, and nothing in audit_log', async () => {
    const journal = await dead.dataSource.getRepository(AuditJournalEntity).find();
    expect(journal.length).toBeGreaterThanOrEqual(3);
    expect(new Set(journal.map((row) => row.unitId)).size).toBe(2);
    expect(await dead.rows()).toEqual([]);
  });

  it('three instances recovering at the same moment store each unit exactly once', async () => {
    // Age the dead instance's lease past recoverAfter of the rescuers.
    await dead.dataSource
      .getRepository(AuditInstanceEntity)
      .createQueryBuilder()
      .update()
      .set({ heartbeatAt: new Date(Date.now() - 3_600_000) })
      .execute();
    rescuers.push(
      ...(await Promise.all(
        [1, 2, 3].map(() => createTestApp({ db, adapter: 'express', audit: { recoverAfter: 1_000 } })),
      )),
    );
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count()).toBe(0);

    const rows = await dead.dataSource.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } });
    const intents = rows.filter((row) => row.kind === 'intent');
    expect(intents).toHaveLength(1);
    expect(intents[0]).toMatchObject({
      action: 'order.repriced',
      outcome: 'unknown',
      error: { name: 'Interrupted' },
      actorType: 'user',
      actorId: '1',
      source: 'http',
      route: '/stalled/orders/:id',
      requestId: intentRequestId,
    });
    const claimed = intents[0]!.changes!.map((change) => [change.entity, change.operation]);
    expect(claimed).toEqual([
      ['Order', 'update'],
      ['Order', 'insert'],
    ]);
    expect(intents[0]!.changes![0]!.fields).toEqual({ total: { from: 10, to: 99 } });

    const fallback = rows.filter((row) => row.kind === 'change');
    expect(fallback.map((row) => [row.action, row.requestId, row.outcome])).toEqual([['order.updated', untrackedRequestId, 'success']]);
    expect(fallback[0]!.changes![0]!.fields).toEqual({ note: { from: null, to: 'stalled' } });

    // The dead instance's lease is gone; each rescuer holds its own.
    const instances = dead.dataSource.getRepository(AuditInstanceEntity);
    for (let i = 0; i < 50 && (await instances.count()) > rescuers.length; i++) await sleep(100);
    expect(await instances.count()).toBe(rescuers.length);
  });
});
