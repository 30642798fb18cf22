// find() and export() given filter values of the wrong type or shape: each is refused
// with InvalidAuditQueryError naming the filter, never ignored (which matched every
// event), turned into text (which matched none) or handed to the driver (which failed
// with its own error, or on PostgreSQL compared against an array literal). Times given as
// text are ISO 8601, a time without a zone is UTC (as the viewer and the command line take
// it), whatever the process's time zone; a date that is not on the calendar is refused,
// also by the viewer's search form. A query that is not an object, and history() options
// it does not know, are refused too.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule, InvalidAuditQueryError, type AuditQuery } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(databases())('find() and export() with filter values of the wrong type on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  const zone = process.env['TZ'];

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })] });
    const base = Date.parse('2026-02-01T00:00:00.000Z');
    const rows = Array.from({ length: 6 }, (_, i) => ({
      id: `01900000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      // Two events an hour apart, then one every hour: 00:00, 01:00, … 05:00 UTC.
      occurredAt: new Date(base + i * 3_600_000),
      action: i % 2 ? 'doc.viewed' : 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: `u${i % 3}`,
      source: i % 2 ? 'http' : 'job',
      targetType: 'doc',
      targetId: 'd1',
    }));
    await t.dataSource.getRepository(AuditLogEntity).insert(rows as never);
  });
  afterEach(() => {
    if (zone === undefined) delete process.env['TZ'];
    else process.env['TZ'] = zone;
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ['an actor given as text', { actor: 'user:u1' }, /Invalid audit query: actor must be an object such as \{ type: "user", id: "42" \}/],
    ['an actor with a key that is none of its own', { actor: { ID: 'u1' } }, /Invalid audit query: actor\.ID is not a key of actor \(it takes type and id\)/],
    ['an empty list of actions', { action: [] }, /Invalid audit query: action must be a string or a non-empty array of strings/],
    ['an array of actor ids', { actorId: ['u1', 'u2'] }, /Invalid audit query: actorId must be a string or a number/],
    ['an object as actor id', { actorId: { $ne: null } }, /Invalid audit query: actorId must be a string or a number/],
    ['an array of actor types', { actor: { type: ['user'] } }, /Invalid audit query: actor\.type must be a string/],
    ['an array of sources', { source: ['http', 'job'] }, /Invalid audit query: source must be a string/],
    ['an object as request id', { requestId: { $gt: '' } }, /Invalid audit query: requestId must be a string/],
    ['an array of target types', { targetType: ['doc'] }, /Invalid audit query: targetType must be a string/],
    ['null as actor type', { actorType: null }, /Invalid audit query: actorType must be a string/],
    ['a number as outcome', { outcome: 1 }, /Invalid audit query: outcome must be one of success, failure, unknown, got 1/],
    ['an unknown outcome', { outcome: 'ok' }, /Invalid audit query: outcome must be one of success, failure, unknown, got "ok"/],
    ['an unknown kind', { kind: 'changes' }, /Invalid audit query: kind must be one of intent, change, got "changes"/],
    ['a year-less number as a date', { from: '1' }, /Invalid audit query: from is not a valid date: "1"$/],
    ['a month as a date', { to: '12' }, /Invalid audit query: to is not a valid date: "12"$/],
    ['a date in words', { from: 'Feb 1 2026' }, /Invalid audit query: from is not a valid date: "Feb 1 2026"$/],
    ['a day that is not on the calendar', { from: '2026-02-30' }, /Invalid audit query: from is not a valid date: "2026-02-30"$/],
    ['a zoned time on a day that is not on the calendar', { to: '2026-02-31T10:00:00Z' }, /Invalid audit query: to is not a valid date/],
    ['hour 24', { from: '2026-02-01T24:00Z' }, /Invalid audit query: from is not a valid date/],
    ['an invalid Date', { to: new Date('yesterday') }, /Invalid audit query: to is not a valid date: an invalid Date$/],
    ['a number as a date', { from: 1_767_225_600_000 }, /Invalid audit query: from is not a valid date: 1767225600000$/],
  ];

  it.each(refused)('refuses %s in find() and export(), naming it', async (_, query, message) => {
    await expect(t.audit.find(query as AuditQuery)).rejects.toThrow(message);
    await expect(t.audit.find(query as AuditQuery)).rejects.toBeInstanceOf(InvalidAuditQueryError);
    expect(() => t.audit.export(query as AuditQuery)).toThrow(message);
  });

  it('refuses a query or history() options that are not an object, or history() options it does not know', async () => {
    for (const query of [null, 'actorId=u1', ['u1'], 42]) {
      await expect(t.audit.find(query as never), JSON.stringify(query)).rejects.toThrow('Invalid audit query: query must be an object such as { actorId: "42" }');
    }
    const doc = { type: 'doc', id: 'd1' };
    await expect(t.audit.history(doc, null as never)).rejects.toThrow('Invalid audit query: options must be an object such as { limit: 100 }');
    await expect(t.audit.history(doc, { limt: 2 } as never)).rejects.toThrow('Invalid audit query: limt is not an option of history() (it takes limit)');
    expect(await t.audit.history(doc, { limit: 2 })).toHaveLength(2);
    expect(await t.audit.history(doc, {})).toHaveLength(6);
  });

  it('still takes the filters in their documented forms', async () => {
    const actions = async (query: AuditQuery): Promise<string[]> => (await t.audit.find(query)).items.map((e) => `${e.action}@${e.occurredAt.toISOString().slice(11, 13)}`);
    expect(await actions({ actor: { type: 'user', id: 'u1' } })).toEqual(['doc.edited@04', 'doc.viewed@01']);
    expect(await actions({ actorId: 'u1', actorType: 'user' })).toEqual(['doc.edited@04', 'doc.viewed@01']);
    expect(await actions({ action: ['doc.viewed'], outcome: 'success', kind: 'intent' })).toEqual(['doc.viewed@05', 'doc.viewed@03', 'doc.viewed@01']);
    expect(await actions({ source: 'job', from: '2026-02-01T02:00:00.000Z', to: new Date('2026-02-01T05:00:00Z') })).toEqual(['doc.edited@04', 'doc.edited@02']);
    expect(await actions({ from: '2026-02-01T03:00+01:00', to: '2026-02-01' })).toEqual([]);
    expect(await actions({ from: '2026-02-01T03:00+01:00', to: '2026-02-02' })).toEqual(['doc.viewed@05', 'doc.edited@04', 'doc.viewed@03', 'doc.edited@02']);
  });

  it('compares action, actorType and source exactly, as requestId and actorId (another case or a trailing space is another value, on MariaDB too), in find() and export()', async () => {
    const count = async (query: AuditQuery): Promise<number> => {
      let exported = '';
      for await (const chunk of t.audit.export(query)) exported += String(chunk);
      const lines = exported.split('\n').filter(Boolean).length;
      const found = (await t.audit.find(query)).items.length;
      expect(lines).toBe(found);
      return found;
    };
    expect(await count({ actorType: 'user' })).toBe(6);
    expect(await count({ source: 'job' })).toBe(3);
    expect(await count({ action: ['doc.viewed', 'doc.edited'] })).toBe(6);
    for (const query of [{ actorType: 'USER' }, { actorType: 'user ' }, { actor: { type: 'User', id: 'u1' } }, { source: 'JOB' }, { source: 'job ' }, { action: 'DOC.VIEWED' }, { action: ['doc.viewed ', 'Doc.Edited'] }] as AuditQuery[]) {
      expect(await count(query), JSON.stringify(query)).toBe(0);
    }
  });

  it('takes a time without a zone as UTC, whatever the time zone of the process', async () => {
    process.env['TZ'] = 'America/New_York';
    const page = await t.audit.find({ from: '2026-02-01T03:00', to: '2026-02-01 05:00:00' });
    expect(page.items.map((e) => e.occurredAt.toISOString())).toEqual(['2026-02-01T04:00:00.000Z', '2026-02-01T03:00:00.000Z']);
    let exported = '';
    for await (const chunk of t.audit.export({ from: '2026-02-01T04:00' })) exported += String(chunk);
    expect(exported.trim().split('\n').map((line) => (JSON.parse(line) as { occurredAt: string }).occurredAt)).toEqual([
      '2026-02-01T04:00:00.000Z',
      '2026-02-01T05:00:00.000Z',
    ]);
  });

  it("the viewer's search refuses a day off the calendar instead of rolling it over", async () => {
    const headers = { authorization: 'Bearer alice-token' };
    const refused = await t.request('/audit?from=2026-02-30T10:00', { headers });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('Invalid audit query: from is not a valid date and time: &quot;2026-02-30T10:00&quot;');
    const page = await t.request('/audit?from=2026-02-01T04:00&to=2026-02-01T05:00:00Z', { headers });
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('2026-02-01 04:00:00.000 UTC');
    expect(text).not.toContain('2026-02-01 05:00:00.000 UTC');
    expect(text).not.toContain('2026-02-01 03:00:00.000 UTC');
  });
});
