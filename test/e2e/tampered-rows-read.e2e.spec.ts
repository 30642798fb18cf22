// Rows of audit_log an administrator changed by hand with SQL, which verify() reports as
// `modified`, read with find(), history() and the viewer. SQLite keeps any text in a JSON
// column (`changes = 'not json'`) and in occurred_at ('garbage'); PostgreSQL takes
// 'infinity' and years BC or past 9999 in a timestamp; MariaDB a zero date under its
// default sql_mode. find() rejected such a page with TypeORM's SyntaxError, or returned it
// and threw a RangeError making its cursor (or refused the cursor on the next call), so
// that no one could read the rest of the trail. Each is returned now as it can be read,
// with the stored text of what could not be read in `unreadable`, and paging goes on past
// it in the database's order (occurred_at DESC, id DESC).
import { generateKeyPairSync } from 'node:crypto';
import { Injectable, type CanActivate } from '@nestjs/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditViewerModule, type AuditEvent, type AuditQuery } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/tampered-read';
const { privateKey } = generateKeyPairSync('ed25519');

@Injectable()
class LetThrough implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** What each database lets an UPDATE put in occurred_at that is no time JavaScript reads. */
const NOT_A_TIME: Partial<Record<DatabaseKind, string[]>> = {
  sqlite: ['garbage'],
  postgres: ['infinity', '-infinity'],
  mariadb: ['0000-00-00 00:00:00.000'],
};

/** Times a database stores that are read, but cannot be given back as a query's time (years outside 0001-9999), or sort apart from their instant (SQLite text). */
const ODD_TIME: Partial<Record<DatabaseKind, string[]>> = {
  sqlite: ['2026-02-01T00:03:30+01:00', '12345'],
  postgres: ['0044-03-15 12:00:00 BC', '12026-01-01 00:00:00'],
};

const EVENTS = 6;

describe.each(databases())('reading rows changed by hand on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let ids: string[];

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      imports: [AuditViewerModule.register({ path: '/audit', guard: LetThrough, pageSize: 2 })],
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    const rows = Array.from({ length: EVENTS }, (_, i) => ({
      id: `01900000-0000-7000-8000-${String(i + 1).padStart(12, '0')}`,
      occurredAt: new Date(Date.parse('2026-02-01T00:00:00.000Z') + i * 60_000),
      action: 'doc.edited',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: '7',
      source: 'http',
      targetType: 'doc',
      targetId: '5',
      reason: `edit ${i + 1}`,
      changes: [{ entity: 'Doc', id: '5', operation: 'update', fields: { title: { from: `t${i}`, to: `t${i + 1}` } } }],
      context: { step: i + 1 },
    }));
    await t.dataSource.getRepository(AuditLogEntity).insert(rows as never);
    ids = rows.map((row) => row.id);
    await t.audit.checkpoint();
    expect((await t.audit.verify()).problems).toEqual([]);
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const table = (): string => escapedTable(t.dataSource, t.dataSource.getMetadata(AuditLogEntity));
  const q = (name: string): string => t.dataSource.driver.escape(name);
  const p = (i: number): string => (kind === 'postgres' ? `$${i}` : '?');
  /** An administrator's UPDATE of one column of one row. */
  const tamper = (id: string, column: string, value: string | number): Promise<unknown> =>
    t.dataSource.query(`UPDATE ${table()} SET ${q(column)} = ${p(1)} WHERE ${q('id')} = ${p(2)}`, [value, id]);
  /** The ids in the database's own order of find(). */
  const databaseOrder = async (): Promise<string[]> =>
    ((await t.dataSource.query(`SELECT ${q('id')} AS ${q('id')} FROM ${table()} ORDER BY ${q('occurred_at')} DESC, ${q('id')} DESC`)) as Array<{ id: string }>).map((row) => row.id);
  /** Every event of find(query), a page of `limit` at a time (at most 20 pages). */
  const everyPage = async (limit: number, query: AuditQuery = {}): Promise<AuditEvent[]> => {
    const events: AuditEvent[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const found = await t.audit.find({ ...query, limit, ...(cursor ? { cursor } : {}) });
      events.push(...found.items);
      if (!found.nextCursor) return events;
      cursor = found.nextCursor;
    }
    throw new Error('find() kept giving a cursor');
  };
  const modified = async (): Promise<string[]> => (await t.audit.verify()).problems.filter((problem) => problem.kind === 'modified').map((problem) => problem.id!);

  if (kind === 'sqlite') {
    it.each(['changes', 'context', 'error'] as const)('a %s that is not JSON: every page is read, the row with its stored text in `unreadable`', async (field) => {
      await tamper(ids[3]!, field, 'not json');
      expect(await modified()).toEqual([ids[3]]);
      for (const limit of [1, 2, 3, 50]) {
        const events = await everyPage(limit);
        expect(events.map((event) => event.id), `limit ${limit}`).toEqual([...ids].reverse());
        const odd = events.find((event) => event.id === ids[3])!;
        expect(odd.unreadable).toEqual({ [field]: 'not json' });
        expect(odd.reason).toBe('edit 4');
        expect(odd.changes).toEqual(field === 'changes' ? [] : [expect.objectContaining({ entity: 'Doc' })]);
        if (field === 'context') expect(odd.context).toBeUndefined();
        for (const event of events.filter((other) => other.id !== ids[3])) expect(event.unreadable).toBeUndefined();
      }
      const history = await t.audit.history({ type: 'doc', id: '5' });
      expect(history.map((event) => event.id)).toEqual(ids);
      expect(history[3]!.unreadable).toEqual({ [field]: 'not json' });
    });

    it('the viewer shows a row whose changes are not JSON on every page', async () => {
      await tamper(ids[3]!, 'changes', 'not json');
      const search = await t.request('/audit?action=doc.edited&cursor=' + (await t.audit.find({ action: 'doc.edited', limit: 2 })).nextCursor);
      const searchPage = await search.text();
      expect(search.status, searchPage).toBe(200);
      expect(searchPage).toContain(`/audit/events/${ids[3]}`);
      const event = await t.request(`/audit/events/${ids[3]}`);
      const eventPage = await event.text();
      expect(event.status, eventPage).toBe(200);
      expect(eventPage).toContain('edit 4');
      expect(eventPage).toContain('not json');
      const timeline = await t.request('/audit/timeline?type=doc&id=5');
      const timelinePage = await timeline.text();
      expect(timeline.status, timelinePage).toBe(200);
      expect(timelinePage).toContain('edit 4');
    });
  }

  for (const stored of NOT_A_TIME[kind] ?? []) {
    it(`occurred_at ${stored} on a row that ends a page and is deleted before the next: the next page goes on with the rows after it`, async () => {
      // Two rows with no time: they sort together, apart from the others.
      for (const id of [ids[1]!, ids[2]!]) await tamper(id, 'occurred_at', stored);
      const order = await databaseOrder();
      // The page that ends at the first of the two (its cursor holds that row's stored time).
      const at = order.indexOf(ids[2]!);
      const first = await t.audit.find({ limit: at + 1 });
      expect(first.items.map((event) => event.id)).toEqual(order.slice(0, at + 1));
      expect(JSON.parse(Buffer.from(first.nextCursor!, 'base64url').toString())[0]).toBe('stored');
      await t.dataSource.query(`DELETE FROM ${table()} WHERE ${q('id')} = ${p(1)}`, [ids[2]]);
      const rest: AuditEvent[] = [];
      let cursor: string | null = first.nextCursor;
      for (let page = 0; page < 10 && cursor; page++) {
        const found = await t.audit.find({ limit: 50, cursor });
        rest.push(...found.items);
        cursor = found.nextCursor;
      }
      expect(rest.map((event) => event.id)).toEqual(order.slice(at + 1));
    });

    it(`occurred_at ${stored}: every page is read in the database's order, the row with an Invalid Date and its stored time in \`unreadable\``, async () => {
      await tamper(ids[2]!, 'occurred_at', stored);
      expect(await modified()).toContain(ids[2]);
      const order = await databaseOrder();
      expect([...order].sort()).toEqual(ids);
      for (const limit of [1, 2, 3, 4, 5, 50]) {
        const events = await everyPage(limit);
        expect(events.map((event) => event.id), `limit ${limit}`).toEqual(order);
        const odd = events.find((event) => event.id === ids[2])!;
        expect(Number.isNaN(odd.occurredAt.getTime())).toBe(true);
        expect(odd.unreadable).toEqual({ occurredAt: expect.any(String) });
        expect(odd.unreadable!.occurredAt).toContain(stored.slice(0, 8));
        expect(odd.reason).toBe('edit 3');
      }
      // With a filter too (the cursor is bound to it).
      expect((await everyPage(1, { actorId: '7' })).map((event) => event.id)).toEqual(order);
      expect((await t.audit.history({ type: 'doc', id: '5' })).map((event) => event.id)).toEqual([...order].reverse());
    });

    it(`occurred_at ${stored}: the viewer pages past the row`, async () => {
      await tamper(ids[2]!, 'occurred_at', stored);
      const order = await databaseOrder();
      const seen: string[] = [];
      let path = '/audit?action=doc.edited';
      for (let page = 0; page < 10 && path; page++) {
        const response = await t.request(path);
        const html = await response.text();
        expect(response.status, html).toBe(200);
        seen.push(...[...html.matchAll(/<td data-label="Time"><a class="mono" href="\/audit\/events\/([0-9a-f-]{36})"/g)].map((m) => m[1]!));
        const next = /<a rel="next" href="([^"]+)"/.exec(html)?.[1];
        path = next ? next.replace(/&amp;/g, '&') : '';
      }
      expect(seen).toEqual(order);
      const event = await t.request(`/audit/events/${ids[2]}`);
      const eventPage = await event.text();
      expect(event.status, eventPage).toBe(200);
      expect(eventPage).toContain('not a valid time (stored as &quot;');
      expect(eventPage).toContain(stored.slice(0, 8));
      expect(eventPage).toContain('edit 3');
    });

    it(`occurred_at ${stored} on every event about a target: history() and find() page past 1,000 in id order`, async () => {
      const rows = Array.from({ length: 1001 }, (_, i) => ({
        id: `01900000-0000-7000-9000-${String(i + 1).padStart(12, '0')}`,
        occurredAt: new Date(Date.parse('2026-03-01T00:00:00.000Z') + i * 1000),
        action: 'doc.bulk',
        outcome: 'success',
        kind: 'intent',
        actorType: 'user',
        source: 'job',
        targetType: 'doc',
        targetId: '9',
      }));
      for (let i = 0; i < rows.length; i += 200) await t.dataSource.getRepository(AuditLogEntity).insert(rows.slice(i, i + 200) as never);
      await t.dataSource.query(`UPDATE ${table()} SET ${q('occurred_at')} = ${p(1)} WHERE ${q('target_id')} = ${p(2)}`, [stored, '9']);
      const history = await t.audit.history({ type: 'doc', id: '9' });
      expect(history.map((event) => event.id)).toEqual(rows.map((row) => row.id));
      expect(history.every((event) => event.unreadable?.occurredAt !== undefined)).toBe(true);
      expect((await everyPage(1000, { action: 'doc.bulk' })).map((event) => event.id)).toEqual(rows.map((row) => row.id).reverse());
    });
  }

  for (const stored of ODD_TIME[kind] ?? []) {
    it(`occurred_at ${stored} on two rows: every page is read in the database's order`, async () => {
      // Two rows, so that one of them ends a page with another after it.
      for (const id of [ids[2]!, ids[4]!]) await tamper(id, 'occurred_at', kind === 'sqlite' && /^\d+$/.test(stored) ? Number(stored) : stored);
      const order = await databaseOrder();
      expect([...order].sort()).toEqual(ids);
      for (const limit of [1, 2, 3, 4, 5, 50]) {
        expect((await everyPage(limit)).map((event) => event.id), `limit ${limit}`).toEqual(order);
      }
      expect((await t.audit.history({ type: 'doc', id: '5' })).map((event) => event.id)).toEqual([...order].reverse());
    });
  }
});
