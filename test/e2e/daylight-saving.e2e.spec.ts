import { generateKeyPairSync } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { uuidv7Time } from '../../lib/events/uuid-v7.js';
import { AuditCheckpointEntity, AuditInstanceEntity, AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * 2026-03-29 02:30 UTC is an ordinary instant (04:30 in Berlin), but as a wall-clock time it
 * falls in the hour Europe/Berlin skips that night (02:00 -> 03:00 local).
 */
const IN_SPRING_GAP = '2026-03-29T02:30:00.123Z';
/** 2026-10-25 00:30 and 01:30 UTC are both 02:30 in Berlin, the hour it repeats that night. */
const IN_AUTUMN_REPEAT = ['2026-10-25T00:30:00.456Z', '2026-10-25T01:30:00.789Z'];
const LOGGED = [IN_SPRING_GAP, ...IN_AUTUMN_REPEAT];
/** When the checkpoint is signed: in the same skipped hour. */
const CHECKPOINTED = '2026-03-29T02:45:00.000Z';
/** In the hour Berlin skips in 2027: a heartbeat still in the future, which recovery leaves alone. */
const NEXT_SPRING_GAP = '2027-03-28T02:30:00.321Z';

async function text(stream: Readable): Promise<string> {
  let all = '';
  for await (const chunk of stream) all += (chunk as Buffer).toString('utf8');
  return all;
}

// SQLite keeps UTC text (and better-sqlite3 does not bind vitest's fake Date), so it is left out.
describe.each(databases().filter((kind) => kind !== 'sqlite'))('times around daylight-saving changes, process TZ=Europe/Berlin, on %s', (kind) => {
  const originalTz = process.env['TZ'];
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  let db: TestDatabase;
  let t: TestApp;
  const ids = new Map<string, string>();
  beforeAll(async () => {
    process.env['TZ'] = 'Europe/Berlin';
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: 'example.com/dst', sequenceEvery: 60_000, checkpointEvery: { ms: 3_600_000 } } },
    });
    await t.clearAudit();
    for (const at of LOGGED) {
      vi.useFakeTimers({ toFake: ['Date'], now: new Date(at) });
      ids.set(at, await t.audit.log({ action: 'clock.checked', target: { type: 'Clock', id: 'berlin' } }));
      vi.useRealTimers();
    }
  });
  afterEach(() => {
    vi.useRealTimers();
    process.env['TZ'] = 'Europe/Berlin';
  });
  afterAll(async () => {
    if (originalTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = originalTz;
    await t?.close();
    await db?.drop();
  });

  it('logs each event with the instant its UUID v7 carries', () => {
    expect(LOGGED.map((at) => uuidv7Time(ids.get(at)!))).toEqual(LOGGED.map((at) => Date.parse(at)));
  });

  it.each(['Europe/Berlin', 'UTC', 'America/New_York'])('find(), history() and export() return the logged instants, read in %s', async (zone) => {
    process.env['TZ'] = zone;
    const expected = LOGGED.map((at) => [ids.get(at), at]).reverse();
    const { items } = await t.audit.find({ action: 'clock.checked' });
    expect(items.map((event) => [event.id, event.occurredAt.toISOString()])).toEqual(expected);
    const history = await t.audit.history({ type: 'Clock', id: 'berlin' });
    expect(history.map((event) => [event.id, event.occurredAt.toISOString()]).sort()).toEqual([...expected].sort());
    const lines = (await text(t.audit.export({ action: 'clock.checked' })))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { id: string; occurredAt: string });
    expect(lines.map((line) => [line.id, line.occurredAt])).toEqual([...expected].reverse());
  });

  it('verify() after checkpoint() finds nothing wrong, read in Berlin or in UTC', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date(CHECKPOINTED) });
    await t.audit.checkpoint();
    vi.useRealTimers();
    const checkpoints = await t.dataSource.getRepository(AuditCheckpointEntity).find();
    expect(checkpoints.map((checkpoint) => checkpoint.createdAt.toISOString())).toEqual([CHECKPOINTED]);
    const inBerlin = await t.audit.verify({ publicKeys: [publicKey] });
    process.env['TZ'] = 'UTC';
    const inUtc = await t.audit.verify({ publicKeys: [publicKey] });
    expect({ berlin: inBerlin.problems.map((p) => p.kind), utc: inUtc.problems.map((p) => p.kind) }).toEqual({ berlin: [], utc: [] });
    expect(inUtc.events).toBe(LOGGED.length);
  });

  it('reads back journal and instance times written in the skipped hour', async () => {
    const at = new Date(NEXT_SPRING_GAP);
    const instanceId = '019d376d-0000-7000-8000-00000000d57a';
    const journalId = '019d376d-0000-7000-8000-00000000d57b';
    const instances = t.dataSource.getRepository(AuditInstanceEntity);
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    await instances.insert({ id: instanceId, startedAt: at, heartbeatAt: at });
    await journal.insert({ id: journalId, unitId: journalId, instanceId, createdAt: at, entry: { changes: [] } as never });
    try {
      for (const zone of ['Europe/Berlin', 'UTC']) {
        process.env['TZ'] = zone;
        const instance = await instances.findOneByOrFail({ id: instanceId });
        const row = await journal.findOneByOrFail({ id: journalId });
        expect([instance.startedAt.toISOString(), instance.heartbeatAt.toISOString(), row.createdAt.toISOString()]).toEqual([NEXT_SPRING_GAP, NEXT_SPRING_GAP, NEXT_SPRING_GAP]);
      }
    } finally {
      await journal.delete({ id: journalId });
      await instances.delete({ id: instanceId });
    }
  });

  it("leaves the app's own statements reading dates as the data source is configured (local time)", async () => {
    const sql = kind === 'postgres' ? "SELECT TIMESTAMP '2026-01-15 10:00:00.250' AS at" : "SELECT CAST('2026-01-15 10:00:00.250' AS DATETIME(3)) AS at";
    const [row] = (await t.dataSource.query(sql)) as Array<{ at: Date }>;
    expect(row!.at.getTime()).toBe(new Date(2026, 0, 15, 10, 0, 0, 250).getTime());
    expect(row!.at.toISOString()).toBe('2026-01-15T09:00:00.250Z');
  });
});
