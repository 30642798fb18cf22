// find() and export() with a long `action` list: refused with InvalidAuditQueryError naming
// it, not sent to the database (PostgreSQL and SQLite cap a statement's parameters and
// answer with an error of their own); a list within the bound still filters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidAuditQueryError } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const actions = (count: number): string[] => Array.from({ length: count }, (_, i) => `doc.listed${i}`);

describe.each(databases())('an action list of any length on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    await t.audit.log({ action: 'doc.listed999', reason: 'listed' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('finds with a list of 1,000 actions', async () => {
    const page = await t.audit.find({ action: actions(1000) });
    expect(page.items.map((event) => event.action)).toEqual(['doc.listed999']);
  });

  it.each([1001, 40_000, 70_000])('refuses a list of %i actions with InvalidAuditQueryError, in find() and export()', async (count) => {
    const list = actions(count);
    await expect(t.audit.find({ action: list })).rejects.toThrow(InvalidAuditQueryError);
    await expect(t.audit.find({ action: list })).rejects.toThrow(/action/);
    expect(() => t.audit.export({ action: list })).toThrow(InvalidAuditQueryError);
  });
});
