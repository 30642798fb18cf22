// An export of the whole trail (JSON Lines, integrity on: the sequenced events by seq, then
// those not sequenced yet) while the integrator sequences events: an event not sequenced
// when the export reached the unsequenced ones, and sequenced before its page was read,
// left the `seq IS NULL` pages and was exported by neither part. Every event stored before
// the export started must be in it exactly once, whatever the integrator does meanwhile.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/export-sequencing';
const { privateKey } = generateKeyPairSync('ed25519');
/** More than two pages of the export (1,000 rows each). */
const EVENTS = 2_345;

describe.each(databases())('export() of the whole trail while the integrator sequences on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      // The background integrator does not run within the test: it sequences with checkpoint() at the moment it chooses.
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('exports every event exactly once when the events not sequenced yet get their seq mid-export', async () => {
    const base = Date.parse('2026-03-01T00:00:00.000Z');
    // Some events sequenced before the export (the seq part), the rest not yet.
    const row = (i: number) => ({
      id: `01900000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      occurredAt: new Date(base + i * 1_000),
      action: 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: 'u1',
      source: 'http',
      reason: `edit ${i}`,
    });
    const repository = t.dataSource.getRepository(AuditLogEntity);
    for (let i = 0; i < 100; i += 50) await repository.insert(Array.from({ length: 50 }, (_, k) => row(i + k)) as never);
    await t.audit.checkpoint();
    for (let i = 100; i < EVENTS; i += 200) await repository.insert(Array.from({ length: Math.min(200, EVENTS - i) }, (_, k) => row(i + k)) as never);
    const stored = (await t.rows()).map((r) => r.id).sort();
    expect(stored).toHaveLength(EVENTS);
    expect((await t.rows()).filter((r) => r.seq === null)).toHaveLength(EVENTS - 100);

    const stream = t.audit.export();
    let text = '';
    let sequencedMidway = false;
    for await (const chunk of stream) {
      text += String(chunk);
      // Once the export is into the events not sequenced yet, the integrator sequences them all.
      if (!sequencedMidway && text.includes('"seq":null')) {
        sequencedMidway = true;
        await t.audit.checkpoint();
      }
    }
    expect(sequencedMidway).toBe(true);
    const lines = text.trimEnd().split('\n').map((line) => JSON.parse(line) as { id: string; seq: number | null });
    const ids = lines.map((line) => line.id);
    expect(new Set(ids).size).toBe(ids.length); // nothing twice
    expect([...ids].sort()).toEqual(stored); // nothing skipped
    // The seq part, by seq; then the rest by time, each line with the seq it had when read.
    expect(lines.slice(0, 100).map((line) => line.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(lines[100]!.seq).toBeNull();
    const sequencedLater = lines.slice(100).filter((line) => line.seq !== null).map((line) => line.seq!);
    expect(sequencedLater.length).toBeGreaterThan(0);
    expect(sequencedLater).toEqual([...sequencedLater].sort((a, b) => a - b));
    expect(sequencedLater[0]).toBeGreaterThan(100);
  });
});
