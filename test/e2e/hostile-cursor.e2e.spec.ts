// find()'s cursors, forged or misused: a cursor is the position after the last event of a
// page of one query. Given with other filters it named a position in another result and
// find() returned a page of that one, as if it continued the first (a client that kept the
// cursor while the filters changed pages through the wrong events without a word). It is
// refused now, naming the problem, as is a cursor with bytes added or a time that is not
// the one find() writes; the same filters written another way, or another page size, still
// continue.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const forge = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

describe.each(databases())('find() with a cursor it did not give for this query on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    const rows = Array.from({ length: 8 }, (_, i) => ({
      id: `01900000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      occurredAt: new Date(Date.parse('2026-02-01T00:00:00.000Z') + i * 60_000),
      action: 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: i % 2 ? 'u1' : 'u2',
      source: 'http',
      reason: `edit ${i}`,
    }));
    await t.dataSource.getRepository(AuditLogEntity).insert(rows as never);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('refuses the cursor of one query given with other filters', async () => {
    const first = await t.audit.find({ actorId: 'u1', limit: 2 });
    expect(first.items.map((e) => e.reason)).toEqual(['edit 7', 'edit 5']);
    const cursor = first.nextCursor!;
    for (const other of [{ actorId: 'u2' }, {}, { actorId: 'u1', action: 'doc.edited' }, { actorId: 'u1', from: '2026-02-01' }]) {
      await expect(t.audit.find({ ...other, limit: 2, cursor }), JSON.stringify(other)).rejects.toThrow(
        new InvalidAuditQueryError('cursor', 'was returned by find() for other filters: a cursor continues the query it came from (start again without one)'),
      );
    }
    // The same filters, written another way or with another page size, continue.
    expect((await t.audit.find({ actor: { id: 'u1' }, limit: 2, cursor })).items.map((e) => e.reason)).toEqual(['edit 3', 'edit 1']);
    expect((await t.audit.find({ actorId: 'u1', limit: 5, cursor })).items.map((e) => e.reason)).toEqual(['edit 3', 'edit 1']);
  });

  it('refuses a cursor with bytes added, or with a time find() does not write', async () => {
    const { nextCursor } = await t.audit.find({ limit: 3 });
    const message = 'Invalid audit query: cursor is not a cursor returned by find()';
    for (const cursor of [`${nextCursor!}!!!`, `${nextCursor!}\n`, ` ${nextCursor!}`, forge(['1', '01900000-0000-7000-8000-000000000005']), forge({ 0: 'a', 1: 'b' })]) {
      await expect(t.audit.find({ limit: 3, cursor }), cursor).rejects.toThrow(message);
    }
    expect((await t.audit.find({ limit: 3, cursor: nextCursor! })).items.map((e) => e.reason)).toEqual(['edit 4', 'edit 3', 'edit 2']);
  });

  it("refuses the last page's nextCursor (null) with a message that says there is no next page", async () => {
    const last = await t.audit.find({ limit: 50 });
    expect(last.nextCursor).toBeNull();
    await expect(t.audit.find({ limit: 50, cursor: last.nextCursor as unknown as string })).rejects.toThrow(
      new InvalidAuditQueryError('cursor', 'is null: the page it came from was the last one (its nextCursor is null); leave cursor out to start from the first page'),
    );
  });
});
