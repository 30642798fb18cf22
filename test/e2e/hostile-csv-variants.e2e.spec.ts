// CSV export against formula injection past the first character: a formula after leading
// whitespace (spaces, a no-break space, a line feed), after a quote, or written with the
// full-width signs (＝ ＋ － ＠) that spreadsheets in CJK locales take as formulas. A
// spreadsheet that trims cells on import, or unquotes them, would run what followed:
// each such cell gets the leading ' as a plain "=…" does, through the API and the CLI.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const HOSTILE = [
  ' =HYPERLINK("http://x.test","y")',
  '\u00a0=1+1',
  '\n=1+1',
  '\u3000+1+1',
  '"=1+1',
  "'=1+1",
  '  @SUM(1)',
  ' \t-1+1',
  '＝1+1',
  '＋1+1',
  '－1+1',
  '＠SUM(1)',
];
const HARMLESS = ['plain text', ' leading space', '"quoted"', 'a=b', '1-2'];

async function text(stream: Readable): Promise<string> {
  let all = '';
  for await (const chunk of stream) all += (chunk as Buffer).toString('utf8');
  return all;
}

/** The reason cell of each record (the 19th column), unquoted. */
function reasons(csv: string): string[] {
  const records = csv.split('\r\n').slice(1, -1);
  return records.map((record) => {
    const cells = record.match(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)!.map((cell) => cell.replace(/,$/, '').replace(/^"|"$/g, '').replace(/""/g, '"'));
    return cells[18]!;
  });
}

describe.each(databases())('CSV export of formulas behind whitespace, quotes or full-width signs on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-csv-'));
    ({ db, url } = await cliDatabase(kind, join(dir, 'audit.sqlite')));
    t = await createTestApp({ db, adapter: 'express' });
    const values = [...HOSTILE, ...HARMLESS].map((reason, i) => ({
      id: `01900000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      occurredAt: new Date(Date.parse('2026-01-01T00:00:00Z') + i * 1000),
      action: 'csv.variant',
      outcome: 'success',
      kind: 'intent',
      actorType: 'system',
      source: 'system',
      reason,
    }));
    await t.dataSource.createQueryBuilder().insert().into(AuditLogEntity).values(values as QueryDeepPartialEntity<AuditLogEntity>[]).execute();
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prefixes each such cell with ' and leaves the harmless ones as they are, in the API and the CLI", async () => {
    const expected = [...HOSTILE.map((value) => `'${value}`), ...HARMLESS];
    const api = await text(t.audit.export({ action: 'csv.variant' }, { format: 'csv' }));
    expect(reasons(api)).toEqual(expected);
    const run = await cli('export', ...url, '--format', 'csv', '--action', 'csv.variant');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(api);
  });
});
