import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresLiteral } from '../../lib/integrations/typeorm-commit-statements.js';
import { AuditJournalEntity } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

/** `text` with each lone surrogate replaced by U+FFFD (String.prototype.toWellFormed, ES2024). */
const wellFormed = (text: string): string => (text as unknown as { toWellFormed(): string }).toWellFormed();

/**
 * Claims checked: the journal INSERT inlined into the COMMIT's message (postgresLiteral): values
 * designed to break a literal read back exactly, with standard_conforming_strings on and off.
 * (These pass: kept as coverage of the "no SQL injection through journaled values" claim.)
 */
const hostile = [
  "'",
  "''",
  "\\",
  "\\'",
  "'; DROP TABLE orders; --",
  "\\'); DROP TABLE orders; --",
  "E'\\x41'",
  '$$; COMMIT; $$',
  '/* comment */ -- line',
  'ünï\u00a0cödé 😀 \u2028 \ufeff',
  'tab\tnew\nline\rret',
  "\\\\' OR 1=1 --",
  "x'||pg_sleep(5)||'",
  '\ud800 lone',
  'a'.repeat(200_000),
];

describe.each(['on', 'off'])('postgresLiteral with standard_conforming_strings %s', (setting) => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client(POSTGRES);
    await client.connect();
    await client.query(`SET standard_conforming_strings = ${setting}`);
    await client.query(`SET escape_string_warning = off`);
  });
  afterAll(() => client?.end());

  it('reads back every value as it was', async () => {
    for (const text of hostile) {
      const safe = wellFormed(text);
      const result = await client.query<{ v: string }>(`SELECT ${postgresLiteral(safe)} AS v`);
      expect(result.rows[0]!.v).toBe(safe);
    }
  });
});

describe('journal rows riding on COMMIT with standard_conforming_strings off', () => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    withPostgresSettings(db, '-c standard_conforming_strings=off -c escape_string_warning=off');
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the journal entry holds the hostile values exactly; the orders table survives', async () => {
    const notes = hostile.slice(0, 14).map((text) => text.slice(0, 255));
    expect(await t.dataSource.query('SHOW standard_conforming_strings')).toEqual([{ standard_conforming_strings: 'off' }]);
    const sent: string[] = [];
    const logger = t.dataSource.logger;
    const logQuery = logger.logQuery.bind(logger);
    logger.logQuery = (query, parameters, runner) => {
      sent.push(query);
      return logQuery(query, parameters, runner);
    };
    let entries: Array<{ changes: Array<{ fields: Record<string, { to?: unknown }> }> }> = [];
    await t.audit.runAs({ type: 'user', id: "o'brien\\", display: "Robert'); DROP TABLE orders;--" }, async () => {
      await t.dataSource.transaction(async (manager) => {
        for (const note of notes) await manager.save(Order, manager.create(Order, { note }));
      });
      // The unit is still live: its journal rows are there until it is stored.
      const rows = await t.dataSource.query<Array<{ entry: unknown }>>(`SELECT "entry" FROM ${escapedTable(t.dataSource, t.dataSource.getMetadata(AuditJournalEntity))}`);
      entries = rows.map((row) => (typeof row.entry === 'string' ? JSON.parse(row.entry) : row.entry) as (typeof entries)[number]);
    });
    logger.logQuery = logQuery;
    // The journal INSERT went in the COMMIT's message (the path checked here).
    expect(sent.filter((query) => query.endsWith(';\nCOMMIT') && query.includes(' E\'')).length).toBe(1);
    const journaled = entries.flatMap((entry) => entry.changes.map((change) => change.fields['note']?.to));
    expect(journaled).toEqual(notes.map((note) => wellFormed(note)));
    const rows = await t.rows();
    expect(rows.filter((row) => row.action === 'order.created').map((row) => (row.changes?.[0]?.fields['note'] as { to?: unknown } | undefined)?.to)).toEqual(
      notes.map((note) => wellFormed(note)),
    );
    expect(rows[0]!.actorDisplay).toBe("Robert'); DROP TABLE orders;--");
    expect(await t.dataSource.getRepository(Order).count()).toBe(notes.length);
  });
});
