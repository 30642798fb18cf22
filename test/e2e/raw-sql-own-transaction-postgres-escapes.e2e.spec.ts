// With standard_conforming_strings off, PostgreSQL reads '\'' as a quote: a text holding a
// backslash runs as it is (the module cannot know the session's setting), so that a script
// with its own COMMIT is not taken for one statement of plain DML and wrapped.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

describe.each(databases().filter((kind) => kind === 'postgres'))('a script with its own COMMIT hidden by a backslash-escaped quote, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    withPostgresSettings(db, `-c search_path=${(db.options as { schema: string }).schema} -c standard_conforming_strings=off -c escape_string_warning=off`);
    t = await createTestApp({ db, adapter: 'express', controllers: [RawSqlController], audit: {} });
    await t.dataSource.query('CREATE TABLE raw_counter (v integer)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.app.get(AuditWriter).drain(10_000);
    await t.dataSource.query('DELETE FROM raw_counter');
    await t.dataSource.query('INSERT INTO raw_counter (v) VALUES (0)');
    await t.clearAudit();
    await t.dataSource.getRepository(AuditJournalEntity).clear();
  });
  const counter = async (): Promise<number> => Number(((await t.dataSource.query(`SELECT v FROM raw_counter`)) as Array<{ v: number }>)[0]?.v ?? -1);
  const summary = async () => (await t.rows()).map((row) => ({ action: row.action, kind: row.kind, outcome: row.outcome, changes: row.changes?.length ?? 0 }));
  async function failingJournal<T>(work: () => Promise<T>): Promise<T> {
    await t.dataSource.query(`CREATE OR REPLACE FUNCTION reject_journal() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected audit_journal failure'; END $$ LANGUAGE plpgsql`);
    await t.dataSource.query(`CREATE TRIGGER reject_journal BEFORE INSERT ON audit_journal FOR EACH ROW EXECUTE FUNCTION reject_journal()`);
    try {
      return await work();
    } finally {
      await t.dataSource.query('DROP TRIGGER IF EXISTS reject_journal ON audit_journal');
    }
  }

  // A script with its own COMMIT runs as it is: with the journal INSERT failing, the request
  // is answered 201 and records the change its COMMIT committed.
  it.each([
    ['without a backslash (control)', `UPDATE raw_counter SET v = v + 1 WHERE 'its' <> ''; COMMIT;`],
    ["holding 'it\\'s', a quote to PostgreSQL here", `UPDATE raw_counter SET v = v + 1 WHERE 'it\\'s' <> ''; COMMIT;`],
  ])('a script with its own COMMIT %s, in an @Audited handler whose journal row cannot be written: it runs as it is', async (_name, script) => {
    const response = await failingJournal(() => t.request('/raw', { method: 'POST', json: { statements: [script] } }));
    await t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, counter: await counter(), records: await summary() }).toEqual({
      status: 201,
      counter: 1,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: 1 }],
    });
  });
});
