import { generateKeyPairSync } from 'node:crypto';
import type { EntitySubscriberInterface, LoadEvent } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MODULE_ENTITIES: ReadonlySet<unknown> = new Set<unknown>(AuditEntities);
const { privateKey } = generateKeyPairSync('ed25519');

/**
 * An app's subscriber without `listenTo()` (it hears every entity) whose `afterLoad` knows
 * only the app's entities and fails on any other, as one that decrypts or checks a field
 * of its own would: the module's reads of its own tables never call it. Else recovery,
 * checkpoints, proofs and verify() would fail with the app's error.
 */
describe.each(databases())("an app subscriber's afterLoad and the module's reads of its own tables, on %s", (kind) => {
  let db: TestDatabase;
  let dead: TestApp;
  let t: TestApp;
  const seen: string[] = [];
  const abort = new AbortController();
  const appSubscriber: EntitySubscriberInterface = {
    afterLoad(entity: object, event?: LoadEvent<object>) {
      const target = event?.metadata.target ?? entity.constructor;
      if (MODULE_ENTITIES.has(target)) {
        seen.push(event?.metadata.name ?? entity.constructor.name);
        throw new Error(`the app's subscriber does not know ${event?.metadata.name ?? entity.constructor.name}`);
      }
    },
  };

  beforeAll(async () => {
    db = await sharedDatabase(kind);
    // An instance that "dies" with its journal rows: its handler commits, then hangs.
    dead = await createTestApp({ db, adapter: 'express', controllers: [StalledController], audit: { recoverAfter: 60_000, shutdownTimeout: 200 } });
    const orderId = (await dead.seed(() => dead.dataSource.getRepository(Order).save({ status: 'new', total: 10 }))).id;
    dead.request(`/stalled/orders/${orderId}`, { method: 'PATCH', signal: abort.signal, headers: { authorization: 'Bearer alice-token' } }).catch(() => undefined);
    const journal = dead.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) < 2; i++) await sleep(50);
    expect(await journal.count()).toBe(2);

    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { recoverAfter: 60_000, integrity: { signingKey: privateKey, origin: 'audit.example.test/app-subscriber', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    (t.dataSource.subscribers as EntitySubscriberInterface[]).push(appSubscriber);
  });
  afterAll(async () => {
    abort.abort();
    await t?.close().catch(() => undefined);
    await dead?.close().catch(() => undefined);
    await db?.drop();
  });

  it('recovery of a dead instance, a checkpoint, a proof and verify() succeed, and the app subscriber hears none of the module entities', async () => {
    await t.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).execute();
    await t.app.get(JournalRecovery).runPass();
    expect(await t.dataSource.getRepository(AuditJournalEntity).createQueryBuilder('j').getCount()).toBe(0);
    const recovered = await t.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.action = :action', { action: 'order.repriced' }).getRawMany();
    expect(recovered).toHaveLength(1);

    await t.audit.log({ action: 'note.added', target: { type: 'Note', id: '1' } });
    const checkpoint = await t.audit.checkpoint();
    expect(checkpoint?.treeSize).toBeGreaterThanOrEqual(2);
    const [logged] = (await t.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').select('e.id', 'id').where('e.action = :action', { action: 'note.added' }).getRawMany()) as Array<{ id: string }>;
    const proof = await t.audit.prove(logged!.id);
    expect(proof.seq).toBeGreaterThanOrEqual(1);
    expect(await t.audit.verify()).toMatchObject({ ok: true, problems: [] });
    expect(seen).toEqual([]);
  });

  it('find(), history() and export() read the events, and a purge removes them, without the app subscriber hearing any', async () => {
    await t.audit.log({ action: 'note.edited', target: { type: 'Note', id: '2' } });
    expect((await t.audit.find({ action: 'note.edited' })).items).toHaveLength(1);
    expect(await t.audit.history({ type: 'Note', id: '2' })).toHaveLength(1);
    const exported: unknown[] = [];
    for await (const line of t.audit.export({ action: 'note.edited' })) exported.push(line);
    expect(exported.length).toBeGreaterThan(0);
    await t.audit.checkpoint();
    await sleep(15);
    const purged = await t.audit.purge({ before: new Date() });
    expect(purged.deleted).toBeGreaterThan(0);
    expect(await t.audit.verify()).toMatchObject({ ok: true, problems: [] });
    expect(seen).toEqual([]);
  });
});
