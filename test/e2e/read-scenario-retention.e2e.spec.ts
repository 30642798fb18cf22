// Retention scenarios: the oldest half purged under a signed record with verify() still
// ok, the purge in the trail, options purge() must refuse before removing anything (a
// time in the future, values that are not dates, text that is not ISO 8601), times given
// as text read as the rest of the module reads them, and the scheduled retention.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError, type AuditPurgeOptions } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { logNotes } from '../support/retention.js';
import { rdsDatabase } from '../support/read-scenario-database.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/rds-retention';
const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY = { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } };

describe.each(databases())('retention scenarios on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  const zone = process.env['TZ'];

  afterEach(async () => {
    if (zone === undefined) delete process.env['TZ'];
    else process.env['TZ'] = zone;
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  async function start(integrity: boolean, retention?: { maxAge: string | number; schedule?: string | number }): Promise<TestApp> {
    db = (await rdsDatabase(kind)).db;
    t = await createTestApp({ db, adapter: 'express', audit: { ...(integrity ? { integrity: INTEGRITY } : {}), ...(retention ? { retention } : {}) } });
    return t;
  }

  const insert = async (app: TestApp, rows: Array<Partial<AuditLogEntity>>): Promise<void> => {
    await app.dataSource.getRepository(AuditLogEntity).insert(
      rows.map((row) => ({ id: randomUUID(), action: 'doc.noted', outcome: 'success', kind: 'intent', actorType: 'user', actorId: 'u1', source: 'job', ...row })) as never,
    );
  };

  it('purges the oldest half under a signed record; verify() stays ok and the purge is in the trail', async () => {
    const app = await start(true);
    const old = await logNotes(app.audit, 20, 'old');
    await sleep(15);
    const before = new Date();
    await sleep(15);
    const recent = await logNotes(app.audit, 20, 'new');
    await app.audit.checkpoint();

    const result = await app.audit.purge({ before, batchSize: 7 });
    expect(result).toMatchObject({ deleted: 20, throughSeq: 20 });
    const left = (await app.rows()).map((row) => row.id);
    for (const id of old) expect(left).not.toContain(id);
    for (const id of recent) expect(left).toContain(id);

    const verified = await app.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, purgedThrough: 20 });

    const purged = await app.audit.find({ action: 'audit.purged' });
    expect(purged.items).toHaveLength(1);
    expect(purged.items[0]!.id).toBe(result.eventId);
    expect(purged.items[0]!.context).toMatchObject({ before: before.toISOString(), events: 20, fromSeq: 1, throughSeq: 20, note: result.record });
    expect(await app.audit.history({ type: 'order', id: 'old-1' })).toEqual([]);
    expect((await app.audit.history({ type: 'order', id: 'new-1' })).map((e) => e.id)).toEqual([recent[0]]);

    // More events, a checkpoint: still ok.
    await logNotes(app.audit, 3, 'later');
    await app.audit.checkpoint();
    expect((await app.audit.verify()).ok).toBe(true);
  });

  it('purges many events of one time across batches, and keeps an event at exactly `before`', async () => {
    const app = await start(false);
    const at = new Date(Date.now() - 86_400_000);
    await insert(app, Array.from({ length: 23 }, () => ({ occurredAt: at })));
    const edge = new Date(at.getTime() + 1000);
    const kept = randomUUID();
    await insert(app, [{ id: kept, occurredAt: edge }]);
    const result = await app.audit.purge({ before: edge, batchSize: 5 });
    expect(result.deleted).toBe(23);
    const left = await app.rows();
    expect(left.filter((row) => row.action === 'doc.noted').map((row) => row.id)).toEqual([kept]);
  });

  it.each<[string, unknown]>([
    ['a time in the future', new Date(Date.now() + 3_600_000)],
    ['a number', Date.now() - 86_400_000],
    ['an object', {}],
    ['null', null],
    ['an invalid Date', new Date('nope')],
    ['words', 'yesterday'],
    ['a day off the calendar', '2026-02-30'],
    ['a date in words', 'Feb 1 2026'],
    ['a bare number as text', '1'],
  ])('refuses %s as `before`, naming it, and removes nothing', async (_, before) => {
    const app = await start(false);
    await insert(app, [{ occurredAt: new Date('2000-01-01T00:00:00Z') }, { occurredAt: new Date('2025-12-31T00:00:00Z') }]);
    const error = await app.audit.purge({ before } as AuditPurgeOptions).then(
      (result) => result,
      (e: unknown) => e,
    );
    expect(error, JSON.stringify(before)).toBeInstanceOf(InvalidAuditQueryError);
    expect((error as Error).message).toMatch(/before/);
    expect(await app.dataSource.getRepository(AuditLogEntity).count()).toBe(2);
  });

  it('reads a `before` time without a zone as UTC, as find() does, whatever the server zone', async () => {
    process.env['TZ'] = 'America/Los_Angeles';
    const app = await start(false);
    const early = randomUUID();
    const late = randomUUID();
    await insert(app, [
      { id: early, occurredAt: new Date('2026-01-31T10:00:00.000Z') },
      { id: late, occurredAt: new Date('2026-01-31T15:00:00.000Z') },
    ]);
    // find() reads the zone-less time as 12:00 UTC: only the early event is before it.
    expect((await app.audit.find({ action: 'doc.noted', to: '2026-01-31T12:00' })).items.map((e) => e.id)).toEqual([early]);
    const result = await app.audit.purge({ before: '2026-01-31T12:00' } as unknown as AuditPurgeOptions);
    expect(result.before.toISOString()).toBe('2026-01-31T12:00:00.000Z');
    expect((await app.rows()).filter((row) => row.action === 'doc.noted').map((row) => row.id)).toEqual([late]);
  });

  it('purges on the retention schedule, as the system, and verify() stays ok', async () => {
    const app = await start(true, { maxAge: '2s', schedule: 200 });
    const old = await logNotes(app.audit, 5, 'old');
    await sleep(2_200);
    const recent = await logNotes(app.audit, 3, 'new');
    // The purge's record is stored before the rows go: wait for both.
    let purged: AuditLogEntity[] = [];
    for (let i = 0; i < 60; i++) {
      await sleep(250);
      const rows = await app.rows();
      purged = rows.filter((row) => row.action === 'audit.purged');
      if (purged.length > 0 && !rows.some((row) => old.includes(row.id))) break;
    }
    expect(purged.length).toBeGreaterThanOrEqual(1);
    expect(purged[0]).toMatchObject({ actorType: 'system', actorId: 'retention' });
    const left = (await app.rows()).map((row) => row.id);
    for (const id of old) expect(left).not.toContain(id);
    for (const id of recent) expect(left).toContain(id);
    await app.audit.checkpoint();
    const verified = await app.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified.ok).toBe(true);
  }, 30_000);
});
