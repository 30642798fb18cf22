// find()'s cursor of a row changed by hand to a time that is none holds that stored time: when
// the row is gone by the next call (deleted by the administrator who changed it, or by
// retention), the next page still starts where it stood, and the rows after it follow.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditEvent } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

/** A time that is none, as each database lets an UPDATE store it. */
const NOT_A_TIME: Partial<Record<DatabaseKind, string>> = {
  sqlite: 'garbage',
  postgres: 'infinity',
  mariadb: '0000-00-00 00:00:00.000',
};

const EVENTS = 6;

describe.each(databases().filter((kind) => NOT_A_TIME[kind]))('a cursor at a row with no time that is deleted before the next page, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let ids: string[];

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
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
    }));
    await t.dataSource.getRepository(AuditLogEntity).insert(rows as never);
    ids = rows.map((row) => row.id);
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const table = (): string => escapedTable(t.dataSource, t.dataSource.getMetadata(AuditLogEntity));
  const q = (name: string): string => t.dataSource.driver.escape(name);
  const p = (i: number): string => (kind === 'postgres' ? `$${i}` : '?');

  it('the next page goes on with the rows after it', async () => {
    // Two rows with no time: they sort together, apart from the others.
    for (const id of [ids[1]!, ids[2]!]) {
      await t.dataSource.query(`UPDATE ${table()} SET ${q('occurred_at')} = ${p(1)} WHERE ${q('id')} = ${p(2)}`, [NOT_A_TIME[kind], id]);
    }
    const order = ((await t.dataSource.query(`SELECT ${q('id')} AS ${q('id')} FROM ${table()} ORDER BY ${q('occurred_at')} DESC, ${q('id')} DESC`)) as Array<{ id: string }>).map(
      (row) => row.id,
    );
    // The page that ends at the first of the two rows with no time.
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
});
