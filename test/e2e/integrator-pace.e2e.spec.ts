// The integrator's pace follows the load: while events arrive they get their seq within a fraction of `sequenceEvery`; an idle app is polled once per `sequenceEvery`.
import { generateKeyPairSync } from 'node:crypto';
import { IsNull, Not } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Events stored one after the other, LOAD_GAP_MS apart. */
const EVENTS = 40;
const LOAD_GAP_MS = 50;

describe.each(databases())('the integrator’s pace, sequenceEvery at its default (1 s), on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let passes = 0;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: generateKeyPairSync('ed25519').privateKey, origin: 'audit.test/pace', checkpointEvery: { events: 1_000_000 } } },
    });
    const integrator = t.app.get(AuditIntegrator);
    const batch = integrator.batch.bind(integrator);
    integrator.batch = (...args) => {
      passes++;
      return batch(...args);
    };
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('while events arrive, each has its seq within a few hundred ms; once they stop, one pass a second', async () => {
    const stored = new Map<string, number>();
    const sequenced = new Map<string, number>();
    let loading = true;
    const watch = (async () => {
      while (loading || sequenced.size < stored.size) {
        const rows = await t.dataSource.getRepository(AuditLogEntity).find({ select: { id: true }, where: { action: 'pace.noted', seq: Not(IsNull()) } });
        for (const row of rows) if (!sequenced.has(row.id)) sequenced.set(row.id, Date.now());
        await sleep(10);
      }
    })();
    for (let i = 0; i < EVENTS; i++) {
      const id = await t.audit.log({ action: 'pace.noted', reason: `event ${i}` });
      stored.set(id, Date.now());
      await sleep(LOAD_GAP_MS);
    }
    loading = false;
    await Promise.race([watch, sleep(10_000)]);
    expect(sequenced.size).toBe(EVENTS);

    // Past the first second (the pace was the idle one until a pass found events).
    const delays = [...stored].slice(EVENTS / 2).map(([id, at]) => sequenced.get(id)! - at).sort((a, b) => a - b);
    const median = delays[Math.floor(delays.length / 2)]!;
    expect(median, `delays ${delays.join(', ')} ms`).toBeLessThan(350);

    // Idle again: one pass per second, not ten.
    await sleep(500);
    const before = passes;
    await sleep(3_000);
    expect(passes - before).toBeLessThanOrEqual(4);
    expect(passes - before).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
