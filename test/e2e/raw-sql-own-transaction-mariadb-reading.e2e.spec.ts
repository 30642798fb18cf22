// On MariaDB the module reads raw SQL as the server does where it decides whether a write
// runs in a transaction of the module's: a double-quoted string takes backslash escapes,
// `--` starts a comment only before a space, a text of several statements runs as it is,
// and so does a text naming a MyISAM table anywhere (MySQL's `DELETE FROM a, b USING …`).
// Misread, a MyISAM write or a script with its own ROLLBACK ran inside the module's
// transaction: a committed change without its record, or a write the app's ROLLBACK undid.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(databases().filter((kind) => kind === 'mariadb'))('raw SQL the tokenizer misreads, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const options = { ...db.options, extra: { ...(db.options as { extra?: object }).extra, multipleStatements: true } } as TestDatabase['options'];
    t = await createTestApp({ db: { ...db, options }, adapter: 'express', controllers: [RawSqlController], audit: {} });
    await t.dataSource.query('CREATE TABLE raw_counter (v integer) ENGINE=InnoDB');
    await t.dataSource.query('CREATE TABLE legacy_counter (v integer) ENGINE=MyISAM');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.app.get(AuditWriter).drain(10_000);
    for (const table of ['raw_counter', 'legacy_counter']) {
      await t.dataSource.query(`DELETE FROM ${table}`);
      await t.dataSource.query(`INSERT INTO ${table} (v) VALUES (0)`);
    }
    await t.clearAudit();
    await t.dataSource.getRepository(AuditJournalEntity).clear();
  });
  const counter = async (table: string): Promise<number> => Number(((await t.dataSource.query(`SELECT v FROM ${table}`)) as Array<{ v: number }>)[0]?.v ?? -1);
  const summary = async () => (await t.rows()).map((row) => ({ action: row.action, kind: row.kind, outcome: row.outcome, changes: row.changes?.length ?? 0 }));
  async function failingJournal<T>(work: () => Promise<T>): Promise<T> {
    await t.dataSource.query(`CREATE TRIGGER reject_journal BEFORE INSERT ON audit_journal FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected audit_journal failure'`);
    try {
      return await work();
    } finally {
      await t.dataSource.query('DROP TRIGGER IF EXISTS reject_journal');
    }
  }

  // A write of a MyISAM table runs as it is, its record follows it: with the journal INSERT
  // failing, the request is answered 201 and records the change (`legacy`: what the table
  // holds after, -1 for no row).
  it.each([
    ['the multi-table UPDATE read as is (control)', 'UPDATE raw_counter r, legacy_counter l SET r.v = 1, l.v = l.v + 1', 1],
    // MariaDB reads "\"" as a one-character string; a reader without escapes reads "\" and then a name running to the end.
    ['after a double-quoted string holding \\"', 'UPDATE raw_counter r, legacy_counter l SET r.v = LENGTH("\\""), l.v = l.v + 1', 1],
    ['after `--1` (on MariaDB minus minus one, not a comment)', 'UPDATE raw_counter r, legacy_counter l SET r.v = r.v --1, l.v = l.v + 1', 1],
    ["in MySQL's multi-table DELETE FROM a, b USING a JOIN b", 'DELETE FROM raw_counter, legacy_counter USING raw_counter JOIN legacy_counter', -1],
  ])('a MyISAM write %s, in an @Audited handler whose journal row cannot be written: it runs as it is', async (_name, statement, legacy) => {
    const response = await failingJournal(() => t.request('/raw', { method: 'POST', json: { statements: [statement] } }));
    await t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, legacy: await counter('legacy_counter'), records: await summary() }).toEqual({
      status: 201,
      legacy,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: expect.any(Number) }],
    });
  });

  // Alone (autocommit), the UPDATE commits and the ROLLBACK after it does nothing.
  it.each([
    ['`--1`', 'UPDATE raw_counter SET v = v --1; ROLLBACK'],
    ['a double-quoted string holding \\" and \'', `UPDATE raw_counter SET v = v + 1 WHERE "it\\"'s" IS NOT NULL; ROLLBACK`],
  ])("a script with its own ROLLBACK after %s: the app's UPDATE stays committed, and recorded", async (_name, script) => {
    await t.dataSource.query(script);
    await t.app.get(AuditWriter).drain(10_000);
    expect({ counter: await counter('raw_counter'), records: await summary() }).toEqual({
      counter: 1,
      records: [{ action: 'unknown.updated', kind: 'change', outcome: 'success', changes: 1 }],
    });
  });
});
