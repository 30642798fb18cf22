import { generateKeyPairSync } from 'node:crypto';
import { DataSource, type EntitySubscriberInterface, type LoadEvent } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { StalledController } from '../app/stalled.controller.js';
import { sharedDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MODULE_ENTITIES: ReadonlySet<unknown> = new Set<unknown>(AuditEntities);
const { privateKey } = generateKeyPairSync('ed25519');

/** An instance that "dies" with two journal rows (its handler commits, then hangs), and a live one, with `subscriber` added, that can recover it. */
interface DeadAndLive {
  db: TestDatabase;
  dead: TestApp;
  /** The dead instance's id. */
  deadInstance: string;
  live: TestApp;
  close(): Promise<void>;
}

async function deadAndLive(kind: TestDatabase['kind'], subscriber: EntitySubscriberInterface, origin: string): Promise<DeadAndLive> {
  const abort = new AbortController();
  const db = await sharedDatabase(kind);
  const dead = await createTestApp({ db, adapter: 'express', controllers: [StalledController], audit: { recoverAfter: 60_000, shutdownTimeout: 200 } });
  const orderId = (await dead.seed(() => dead.dataSource.getRepository(Order).save({ status: 'new', total: 10 }))).id;
  dead.request(`/stalled/orders/${orderId}`, { method: 'PATCH', signal: abort.signal, headers: { authorization: 'Bearer alice-token' } }).catch(() => undefined);
  const journal = dead.dataSource.getRepository(AuditJournalEntity);
  for (let i = 0; i < 100 && (await journal.count()) < 2; i++) await sleep(50);
  expect(await journal.count()).toBe(2);
  const live = await createTestApp({
    db,
    adapter: 'express',
    audit: { recoverAfter: 60_000, shutdownTimeout: 200, integrity: { signingKey: privateKey, origin, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
  });
  (live.dataSource.subscribers as EntitySubscriberInterface[]).push(subscriber);
  return {
    db,
    dead,
    deadInstance: dead.app.get(JournalRecovery).instanceId,
    live,
    close: async () => {
      abort.abort();
      await live.close().catch(() => undefined);
      await dead.close().catch(() => undefined);
      await db.drop();
    },
  };
}

/**
 * An app's subscriber without `listenTo()` (it hears every entity) whose `afterLoad` knows
 * only the app's entities and fails on any other, as one that decrypts or checks a field
 * of its own would: the module's reads of its own tables never call it. Else recovery,
 * checkpoints, proofs and verify() would fail with the app's error.
 */
describe.each(databases())("an app subscriber's afterLoad and the module's reads of its own tables, on %s", (kind) => {
  let t: TestApp;
  const seen: string[] = [];
  const appSubscriber: EntitySubscriberInterface = {
    afterLoad(entity: object, event?: LoadEvent<object>) {
      const target = event?.metadata.target ?? entity.constructor;
      if (MODULE_ENTITIES.has(target)) {
        seen.push(event?.metadata.name ?? entity.constructor.name);
        throw new Error(`the app's subscriber does not know ${event?.metadata.name ?? entity.constructor.name}`);
      }
    },
  };

  let instances: DeadAndLive;
  beforeAll(async () => {
    instances = await deadAndLive(kind, appSubscriber, 'audit.example.test/app-subscriber');
    t = instances.live;
  });
  afterAll(() => instances?.close());

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

/**
 * The same app subscriber's write hooks: without `listenTo()` it hears every entity's
 * `beforeInsert`, `afterUpdate`, `beforeRemove`, … and fails on any it does not know, as
 * one that stamps or checks a column of the app's own would. The module's writes of its
 * own tables (its instance lease, journal recovery, purges) never call it: else the app
 * could not start, a dead instance's journal was never recovered, nothing was purged.
 */
describe.each(databases())("an app subscriber's write hooks and the module's writes of its own tables, on %s", (kind) => {
  let t: TestApp;
  const seen: string[] = [];
  const refuse =
    (hook: string) =>
    (event: { metadata: { target: unknown; name: string } }): void => {
      if (MODULE_ENTITIES.has(event.metadata.target)) {
        seen.push(`${hook} ${event.metadata.name}`);
        throw new Error(`the app's subscriber does not know ${event.metadata.name}`);
      }
    };
  const appSubscriber: EntitySubscriberInterface = {
    beforeInsert: refuse('beforeInsert'),
    afterInsert: refuse('afterInsert'),
    beforeUpdate: refuse('beforeUpdate'),
    afterUpdate: refuse('afterUpdate'),
    beforeRemove: refuse('beforeRemove'),
    afterRemove: refuse('afterRemove'),
  };
  let instances: DeadAndLive;
  let db: TestDatabase;
  let dead: TestApp;
  let deadInstance: string;
  beforeAll(async () => {
    instances = await deadAndLive(kind, appSubscriber, 'audit.example.test/app-subscriber-writes');
    ({ db, dead, deadInstance, live: t } = instances);
  });
  afterAll(() => instances?.close());

  beforeEach(() => {
    seen.length = 0;
  });

  it('an app whose data source has that subscriber starts (its instance lease is written) and, shut down, removes its lease', async () => {
    const started = await createTestApp({
      db,
      adapter: 'express',
      audit: { recoverAfter: 60_000, shutdownTimeout: 200 },
      dataSourceFactory: async (options) => {
        const dataSource = await new DataSource(options).initialize();
        (dataSource.subscribers as EntitySubscriberInterface[]).push(appSubscriber);
        return dataSource;
      },
    });
    const me = started.app.get(JournalRecovery).instanceId;
    const leases = () => dead.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder('i').where('i.id = :me', { me }).getCount();
    expect(await leases()).toBe(1);
    await started.close();
    expect(await leases()).toBe(0);
    expect(seen).toEqual([]);
  });

  it("a dead instance's journal is recovered and its lease removed", async () => {
    const app = t;
    await app.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder().update().set({ heartbeatAt: new Date(Date.now() - 3_600_000) }).where('id = :id', { id: deadInstance }).callListeners(false).execute();
    await app.app.get(JournalRecovery).runPass();
    await app.app.get(JournalRecovery).runPass();
    expect(await app.dataSource.getRepository(AuditJournalEntity).createQueryBuilder('j').getCount()).toBe(0);
    const recovered = await app.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.action = :action', { action: 'order.repriced' }).getRawMany();
    expect(recovered).toHaveLength(1);
    expect(await app.dataSource.getRepository(AuditInstanceEntity).createQueryBuilder('i').where('i.id = :id', { id: deadInstance }).getCount()).toBe(0);
    expect(seen).toEqual([]);
  });

  it('a purge removes the events', async () => {
    const app = t;
    await app.audit.log({ action: 'note.added', target: { type: 'Note', id: '1' } });
    await app.audit.checkpoint();
    await sleep(15);
    const purged = await app.audit.purge({ before: new Date() });
    expect(purged.deleted).toBeGreaterThan(0);
    expect(await app.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where("e.action <> 'audit.purged'").getCount()).toBe(0);
    expect(await app.audit.verify()).toMatchObject({ ok: true, problems: [] });
    expect(seen).toEqual([]);
  });
});
