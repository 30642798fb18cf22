// The read side at its edges: a query key that is no filter is refused (not ignored,
// which returned or exported the whole trail), and history() returns every event of a
// resource, past the 1,000 of one page.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(databases())('find(), export() and history() at their edges on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    // 1,005 events about one document, at 1,005 distinct times (some sharing a millisecond with the next).
    const base = Date.parse('2026-02-01T00:00:00.000Z');
    const rows = Array.from({ length: 1_005 }, (_, i) => ({
      id: `01900000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      occurredAt: new Date(base + Math.floor(i / 2)),
      action: 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: 'u1',
      source: 'http',
      targetType: 'doc',
      targetId: 'd1',
      reason: `edit ${i}`,
    }));
    for (let i = 0; i < rows.length; i += 200) await t.dataSource.getRepository(AuditLogEntity).insert(rows.slice(i, i + 200) as never);
    await t.audit.log({ action: 'doc.other', target: { type: 'doc', id: 'd2' } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('history() returns every event of the resource, oldest first, past one page; limit caps it', async () => {
    const all = await t.audit.history({ type: 'doc', id: 'd1' });
    expect(all).toHaveLength(1_005);
    expect(all.map((e) => e.reason)).toEqual(Array.from({ length: 1_005 }, (_, i) => `edit ${i}`));
    expect(new Set(all.map((e) => e.id)).size).toBe(1_005);
    const capped = await t.audit.history({ type: 'doc', id: 'd1' }, { limit: 1_003 });
    expect(capped.map((e) => e.reason)).toEqual(all.slice(0, 1_003).map((e) => e.reason));
    expect(await t.audit.history({ type: 'doc', id: 'd1' }, { limit: 2 })).toHaveLength(2);
    await expect(t.audit.history({ type: 'doc', id: 'd1' }, { limit: 0 })).rejects.toThrow(InvalidAuditQueryError);
  });

  it('find() and export() refuse a key that is not a filter, naming it, instead of matching everything', async () => {
    for (const query of [{ targetType: 'doc', targetId: 'd1' }, { actorID: 'u1' }, { since: new Date() }]) {
      await expect(t.audit.find(query as never)).rejects.toThrow(InvalidAuditQueryError);
      expect(() => t.audit.export(query as never)).toThrow(InvalidAuditQueryError);
    }
    await expect(t.audit.find({ actorID: 'u1' } as never)).rejects.toThrow(/Invalid audit query: actorID is not a filter; the filters are action, actor, actorId/);
    await expect(t.audit.find({ targetId: 'd1' } as never)).rejects.toThrow(/targetId is not a filter \(a target is \{ target: \{ type, id \} \}, or targetType alone\)/);
    // The known filters and find()'s paging still work, and undefined values are no filter.
    const page = await t.audit.find({ target: { type: 'doc', id: 'd2' }, limit: 5, cursor: undefined, outcome: undefined });
    expect(page.items.map((e) => e.action)).toEqual(['doc.other']);
  });
});
