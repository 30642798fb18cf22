// Times given as ISO text with more than three decimals (PostgreSQL's and Python's
// microseconds): events are stored to the millisecond, so `from` (inclusive) and `to`
// (exclusive) keep their meaning only if a fraction past the millisecond is not dropped.
// An event at 10:00:00.000 is before 10:00:00.000500: `to` that time includes it, `from`
// that time does not.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const AT = new Date('2026-03-01T10:00:00.000Z');
const JUST_AFTER = ['2026-03-01T10:00:00.000500Z', '2026-03-01T10:00:00.0000001Z', '2026-03-01T12:00:00.000500+02:00'];

describe.each(databases())('from and to past the millisecond on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let id: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    id = randomUUID();
    await t.dataSource.getRepository(AuditLogEntity).insert({ id, occurredAt: AT, action: 'doc.timed', outcome: 'success', kind: 'intent', actorType: 'user', source: 'http' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it.each(JUST_AFTER)('to %s includes the event, from it excludes it', async (text) => {
    const ids = async (query: object): Promise<string[]> => (await t.audit.find({ action: 'doc.timed', ...query })).items.map((event) => event.id);
    expect(await ids({ to: text })).toEqual([id]);
    expect(await ids({ from: text })).toEqual([]);
  });

  // The last instant of year 9999 with a fraction past the millisecond is still in the
  // years the trail takes, as its millisecond (`.999`) is: not refused as year 10000.
  it('to and from 9999-12-31T23:59:59.9999Z are taken as .999 is (not refused)', async () => {
    const ids = async (query: object): Promise<string[]> => (await t.audit.find({ action: 'doc.timed', ...query })).items.map((event) => event.id);
    expect(await ids({ to: '9999-12-31T23:59:59.999Z' })).toEqual([id]);
    expect(await ids({ to: '9999-12-31T23:59:59.9999Z' })).toEqual([id]);
    expect(await ids({ from: '9999-12-31T23:59:59.9999999Z' })).toEqual([]);
  });
});
