// Events written while a purge runs (requests in flight, the integrator sequencing every
// 20 ms) are neither removed nor left out of the tree; the largest batch works on each
// database.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('a purge while events are written on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  it('keeps every event written during the purge, and the trail verifies', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 20, checkpointEvery: { events: 25 } } },
    });
    for (let i = 0; i < 60; i++) await t.audit.log({ action: 'order.noted', reason: `old ${i + 1}` });
    await sleep(15);
    const before = new Date();
    await sleep(15);

    // Four writers, 40 events each, racing the purge (bounded in count).
    const written: string[] = [];
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 40; i++) written.push(await t!.audit.log({ action: 'order.noted', reason: `during ${w}-${i}` }));
    });
    const purged = t.audit.purge({ before, batchSize: 5 });
    await Promise.all([...writers, purged]);
    expect((await purged).deleted).toBe(60);

    const left = new Set((await t.dataSource.getRepository(AuditLogEntity).find({ select: { id: true } })).map((row) => row.id));
    expect(written.filter((id) => !left.has(id))).toEqual([]);
    await t.audit.checkpoint();
    const verified = await t.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, purgedThrough: 60 });
  }, 120_000);

  it('removes 20,001 events with the largest batch (20,000 ids in one statement)', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    const table = t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map((name) => t!.dataSource.driver.escape(name)).join('.');
    const q = (name: string) => t!.dataSource.driver.escape(name);
    const old = new Date(Date.now() - 86_400_000);
    const stamp = kind === 'postgres' ? old.toISOString() : old.toISOString().replace('T', ' ').replace('Z', '');
    for (let start = 0; start < 20_001; start += 500) {
      const values: string[] = [];
      for (let i = start; i < Math.min(start + 500, 20_001); i++) {
        values.push(`('${crypto.randomUUID()}', '${stamp}', 'order.noted', 'success', 'intent', 'system', 'api')`);
      }
      await t.dataSource.query(
        `INSERT INTO ${table} (${['id', 'occurred_at', 'action', 'outcome', 'kind', 'actor_type', 'source'].map(q).join(', ')}) VALUES ${values.join(', ')}`,
      );
    }
    const result = await t.audit.purge({ before: new Date(), batchSize: 20_000 });
    expect(result.deleted).toBe(20_001);
    expect(await t.dataSource.getRepository(AuditLogEntity).count()).toBe(1); // the purge's own event
  }, 180_000);
});
