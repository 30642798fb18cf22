import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditSubjectEntity } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

/** `text` with each lone surrogate replaced by U+FFFD (String.prototype.toWellFormed, ES2024). */
const wellFormed = (text: string): string => (text as unknown as { toWellFormed(): string }).toWellFormed();

/**
 * Claims checked: the PostgreSQL writer's own array literals (arrayText/arrayLiteral/unnestLiterals),
 * subject rows included, with values designed to break an array literal. Passes: kept as
 * coverage of claim 4 end to end (the unit tests compare with node-postgres only).
 */
const weird = [
  'NULL',
  'null',
  '',
  ' ',
  '  padded  ',
  '{',
  '}',
  '{a,b}',
  'a,b',
  '"',
  '\\',
  '\\"',
  '"\\',
  "'",
  'tab\there',
  'new\nline',
  '😀',
  '\ud800',
  'a\u0000b',
  '\\N',
  'x'.repeat(255),
];

describe('writer array literals on postgres, batched', () => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    withPostgresSettings(db, '-c standard_conforming_strings=off');
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('stores every value as given, in events and their subject rows', async () => {
    // One unit: its events reach the writer together (one unnest statement).
    await t.audit.runAs({ type: 'service', id: 'batch' }, async () => {
      for (const [index, value] of weird.entries()) {
        await t.audit.log({
          action: 'hostile.stored',
          actor: { type: 'user', id: value || 'empty', display: value },
          target: { type: 'order', id: value || 'empty' },
          reason: value,
          context: { value, index, [value || 'k']: value },
          changes: [{ entity: 'Customer', id: `${value}|${index}`, operation: 'update', fields: { note: { from: value, to: null } } }],
        });
      }
    });
    const rows = (await t.rows()).filter((row) => row.action === 'hostile.stored');
    expect(rows).toHaveLength(weird.length);
    const byIndex = new Map(rows.map((row) => [(row.context as { index: number }).index, row]));
    for (const [index, value] of weird.entries()) {
      const stored = wellFormed(value.replaceAll('\u0000', '\\u0000'));
      const row = byIndex.get(index)!;
      expect([row.actorDisplay, row.reason, (row.context as { value: string }).value]).toEqual([stored, stored, stored]);
      expect(row.targetId).toBe(wellFormed((value || 'empty').replaceAll('\u0000', '\\u0000')));
      expect(row.changes?.[0]?.fields['note']).toEqual({ from: stored, to: null });
    }
    const subjects = await t.dataSource.query<Array<{ subject_id: string; event_id: string }>>(
      `SELECT "subject_id", "event_id" FROM ${escapedTable(t.dataSource, t.dataSource.getMetadata(AuditSubjectEntity))}`,
    );
    const expected = weird.map((value, index) => wellFormed(`${value}|${index}`.replaceAll('\u0000', '\\u0000')));
    expected.splice(expected.findIndex((id) => id.length > 255), 1); // subject ids past 255 characters are not kept (by design)
    expect(subjects.map((row) => row.subject_id).sort()).toEqual(expected.sort());
    const ids = new Set(rows.map((row) => row.id));
    expect(subjects.every((row) => ids.has(row.event_id))).toBe(true);
  });
});
