// AuditService.export() and `npx nestjs-system-audit export`: the filters of find(), the
// order, the exact JSON Lines and CSV text (formula injection included), back-pressure
// (a slow consumer holds the database reads back), a database error, and the round trip
// of an export of the whole trail through `verify --events`.
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AfterQueryEvent, EntitySubscriberInterface } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError, exportEventLine, type AuditExportQuery, type AuditQuery } from '../../lib/index.js';
import { canonicalEventJson, canonicalJson } from '../../lib/integrity/canonical-json.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { uuidv7 } from '../../lib/events/uuid-v7.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProcess } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/export';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);
const HEADER =
  'id,seq,occurred_at,action,outcome,kind,actor_type,actor_id,actor_display,source,ip,user_agent,method,route,path,request_id,target_type,target_id,reason,changes,context,error\r\n';

/** The whole text of a stream. */
async function text(stream: Readable): Promise<string> {
  let all = '';
  for await (const chunk of stream) all += (chunk as Buffer).toString('utf8');
  return all;
}

/** The ids of an export's JSON Lines. */
const lineIds = (jsonl: string): string[] =>
  jsonl
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { id: string }).id);

/** A stored row with every column given (the rest null). */
function row(values: Partial<AuditLogEntity> & Pick<AuditLogEntity, 'id' | 'occurredAt' | 'action'>): AuditLogEntity {
  return Object.assign(new AuditLogEntity(), {
    outcome: 'success',
    kind: 'intent',
    actorType: 'system',
    actorId: null,
    actorDisplay: null,
    source: 'system',
    ip: null,
    userAgent: null,
    method: null,
    route: null,
    path: null,
    requestId: null,
    targetType: null,
    targetId: null,
    changes: null,
    context: null,
    reason: null,
    error: null,
    seq: null,
    ...values,
  });
}

describe.each(databases())('export of the audit trail on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-export-'));
    ({ db, url } = await cliDatabase(kind, join(dir, 'audit.sqlite')));
    // Sequenced only when checkpoint() is called.
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Through the query builder (the entity's JSON columns are wider than insert()'s partial type).
  const insert = (rows: AuditLogEntity[]) => t.dataSource.createQueryBuilder().insert().into(AuditLogEntity).values(rows as QueryDeepPartialEntity<AuditLogEntity>[]).execute();
  /** Every page of find(), newest first. */
  const findAll = async (query: AuditQuery): Promise<string[]> => {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await t.audit.find({ ...query, limit: 1000, ...(cursor ? { cursor } : {}) });
      ids.push(...page.items.map((event) => event.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return ids;
  };

  it('refuses what it cannot use, at once: paging, an unknown format, a bad date', () => {
    expect(() => t.audit.export({ limit: 5 } as AuditExportQuery)).toThrow(new InvalidAuditQueryError('limit', 'does not apply to export(), which streams every matching event (page with find())'));
    expect(() => t.audit.export({ cursor: 'abc' } as AuditExportQuery)).toThrow(/cursor does not apply to export\(\)/);
    expect(() => t.audit.export({}, { format: 'xml' as 'csv' })).toThrow(new InvalidAuditQueryError('format', 'must be "jsonl" or "csv", got "xml"'));
    expect(() => t.audit.export({ from: 'last tuesday' })).toThrow(new InvalidAuditQueryError('from', 'is not a valid date: "last tuesday"'));
    expect(() => t.audit.export({ target: { type: 'order' } as never })).toThrow(InvalidAuditQueryError);
  });

  it('filters as find() does, ascending by (occurredAt, id)', async () => {
    await t.audit.runAs({ type: 'user', id: '42', display: 'Ada' }, async () => {
      await t.audit.log({ action: 'order.shipped', target: { type: 'order', id: '1' } });
      await t.audit.log({ action: 'order.cancelled', target: { type: 'order', id: '2' }, outcome: 'failure' });
    });
    await t.audit.runAs({ type: 'user', id: '7' }, async () => {
      await t.audit.log({ action: 'order.shipped', target: { type: 'order', id: '2' } });
      await t.audit.log({ action: 'invoice.sent', target: { type: 'invoice', id: '2' } });
    });
    await t.audit.log({ action: 'order.noted', target: { type: 'order', id: '1' }, reason: 'by the system' });
    const queries: AuditExportQuery[] = [
      { actorId: '42' },
      { actorType: 'user', action: 'order.shipped' },
      { action: ['order.shipped', 'invoice.sent'] },
      { target: { type: 'order', id: '2' } },
      { targetType: 'order', outcome: 'failure' },
      { source: 'job', kind: 'intent' },
      { actor: { type: 'system' } },
      { from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000), targetType: 'invoice' },
    ];
    for (const query of queries) {
      const expected = (await findAll(query)).reverse();
      expect(expected.length, JSON.stringify(query)).toBeGreaterThan(0);
      expect(lineIds(await text(t.audit.export(query))), JSON.stringify(query)).toEqual(expected);
    }
    const byAda = lineIds(await text(t.audit.export({ actorId: '42' })));
    const rows = await t.rows();
    expect(byAda).toEqual(rows.filter((r) => r.actorId === '42').map((r) => r.id));
    expect(byAda).toHaveLength(2);
    expect(await text(t.audit.export({ action: 'nothing.matches' }))).toBe('');
    expect(await text(t.audit.export({ action: 'nothing.matches' }, { format: 'csv' }))).toBe(HEADER);
  });

  it('writes CSV as RFC 4180 text with a header row', async () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    await insert([
      row({
        id: '01900000-0000-7000-8000-000000000001',
        occurredAt: at,
        action: 'csv.exact',
        kind: 'change',
        actorType: 'user',
        actorId: '42',
        actorDisplay: 'Ada',
        source: 'http',
        ip: '203.0.113.9',
        userAgent: 'curl/8.5',
        method: 'PATCH',
        route: '/orders/:id',
        path: '/orders/7',
        requestId: 'req-1',
        targetType: 'order',
        targetId: '7',
        reason: 'carrier pickup',
        changes: [{ entity: 'Order', fields: { status: { from: 'new', to: 'shipped' } }, id: '7', operation: 'update' }] as never,
        context: { carrier: 'DHL' },
      }),
      row({ id: '01900000-0000-7000-8000-000000000002', occurredAt: at, action: 'csv.exact', outcome: 'failure', error: { message: 'boom', name: 'Error' } }),
    ]);
    expect(await text(t.audit.export({ action: 'csv.exact' }, { format: 'csv' }))).toBe(
      HEADER +
        '"01900000-0000-7000-8000-000000000001",,"2026-01-02T03:04:05.678Z","csv.exact","success","change","user","42","Ada","http","203.0.113.9","curl/8.5","PATCH","/orders/:id","/orders/7","req-1","order","7","carrier pickup",' +
        '"[{""entity"":""Order"",""fields"":{""status"":{""from"":""new"",""to"":""shipped""}},""id"":""7"",""operation"":""update""}]","{""carrier"":""DHL""}",\r\n' +
        '"01900000-0000-7000-8000-000000000002",,"2026-01-02T03:04:05.678Z","csv.exact","failure","intent","system",,,"system",,,,,,,,,,,,"{""message"":""boom"",""name"":""Error""}"\r\n',
    );
  });

  it('quotes every cell of an event, so that a spreadsheet splitting on ";" does not run what follows it', async () => {
    await insert([row({ id: '01900000-0000-7000-8000-000000000004', occurredAt: new Date('2026-01-04T00:00:00.000Z'), action: 'csv.semicolon', reason: "refund;=cmd|' /C calc'!A0" })]);
    const record = (await text(t.audit.export({ action: 'csv.semicolon' }, { format: 'csv' }))).slice(HEADER.length);
    expect(record).toContain(`,"refund;=cmd|' /C calc'!A0",`);
    // Split on ";" as such a spreadsheet would: no part starts a formula outside a quoted cell.
    expect(record.split(',').every((cell) => cell === '' || cell.startsWith('"') || cell === '\r\n')).toBe(true);
  });

  it('defuses formulas in CSV cells, ids and JSON included, and quotes what needs quoting', async () => {
    await insert([
      row({
        id: '01900000-0000-7000-8000-000000000003',
        occurredAt: new Date('2026-01-03T00:00:00.000Z'),
        action: 'csv.hostile',
        actorType: 'user',
        actorId: '+1',
        actorDisplay: '@SUM(1)',
        ip: '-1',
        userAgent: '\tagent',
        route: 'say "hi", ok',
        path: '\r/path',
        requestId: 'line 1\nline 2',
        targetType: 'order',
        targetId: "=cmd|' /C calc'!A0",
        reason: 'Zoë 日本 ✓ – fine',
        context: { formula: '=1+1', note: 'a,b' },
      }),
    ]);
    const csv = await text(t.audit.export({ action: 'csv.hostile' }, { format: 'csv' }));
    expect(csv).toBe(
      HEADER +
        '"01900000-0000-7000-8000-000000000003",,"2026-01-03T00:00:00.000Z","csv.hostile","success","intent","user",' +
        "\"'+1\",\"'@SUM(1)\",\"system\",\"'-1\",\"'\tagent\",,\"say \"\"hi\"\", ok\",\"'\r/path\",\"line 1\nline 2\",\"order\",\"'=cmd|' /C calc'!A0\",\"Zoë 日本 ✓ – fine\",," +
        '"{""formula"":""=1+1"",""note"":""a,b""}",\r\n',
    );
    // No cell of the record starts with a formula character once the quotes are taken off.
    const cells = csv.slice(HEADER.length).match(/("(?:[^"]|"")*"|[^,\r\n]*)(,|\r\n)/g)!.map((cell) => cell.replace(/(,|\r\n)$/, '').replace(/^"|"$/g, '').replace(/""/g, '"'));
    expect(cells).toHaveLength(22);
    for (const cell of cells) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
  });

  it('writes each event as the line exportEventLine() writes; one not sequenced yet has "seq":null', async () => {
    const rows = await t.rows();
    const lines = (await text(t.audit.export({}, {}))).split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(rows.length);
    // Nothing is sequenced yet: in (occurredAt, id) order, each line the canonical event plus "seq":null.
    expect(rows.every((r) => r.seq === null)).toBe(true);
    for (const [i, r] of rows.entries()) {
      const { seq, ...event } = JSON.parse(lines[i]!) as Record<string, unknown>;
      expect(seq).toBeNull();
      expect(JSON.stringify(event)).toBe(canonicalEventJson(r));
      expect(lines[i]).toBe(canonicalJson({ ...event, seq: null }));
    }
  });

  it('exports the whole trail by seq after checkpoint(), and that export verifies against the stored checkpoints (API and CLI)', async () => {
    await t.audit.checkpoint();
    const late = await t.audit.log({ action: 'order.late', reason: 'after the checkpoint' });
    const sequenced = (await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).filter((r) => r.seq !== null);
    const exported = (await text(t.audit.export())).split('\n').filter(Boolean);
    expect(exported.slice(0, -1)).toEqual(sequenced.map((r) => exportEventLine(r)));
    expect(JSON.parse(exported.at(-1)!)).toMatchObject({ id: late, seq: null });

    const apiFile = join(dir, 'api.jsonl');
    const cliFile = join(dir, 'cli.jsonl');
    const notes = join(dir, 'checkpoints.txt');
    writeFileSync(apiFile, exported.join('\n') + '\n');
    // As npx runs it once (the database does not change what the process does), in-process on the others.
    expect((await (kind === 'sqlite' ? cliProcess : cli)('export', ...url, '--out', cliFile)).code).toBe(0);
    expect(readFileSync(cliFile, 'utf8')).toBe(readFileSync(apiFile, 'utf8'));
    expect((await cli('checkpoints', ...url, '--out', notes)).code).toBe(0);
    for (const file of [apiFile, cliFile]) {
      const verified = await cli('verify', '--events', file, '--checkpoints', notes, '--public-key', VKEY);
      expect(verified.stdout).toMatch(new RegExp(`^OK: tree size ${sequenced.length}, ${sequenced.length} events`));
      expect(verified.code).toBe(0);
    }
    // A changed line is found.
    const tampered = join(dir, 'tampered.jsonl');
    writeFileSync(tampered, readFileSync(cliFile, 'utf8').replace('"reason":"by the system"', '"reason":"by nobody"'));
    const found = await cli('verify', '--events', tampered, '--checkpoints', notes, '--public-key', VKEY);
    expect(found.stdout).toMatch(/^modified treeSize=\d+ .*do not hash to the root signed/m);
    expect(found.code).toBe(1);
  });

  it('CLI: the filters and --format csv give what export() gives', async () => {
    const cases: Array<[string[], AuditExportQuery]> = [
      [['--actor', '42'], { actorId: '42' }],
      [['--actor-type', 'user', '--action', 'order.shipped'], { actorType: 'user', action: 'order.shipped' }],
      [['--action', 'order.shipped', '--action', 'invoice.sent'], { action: ['order.shipped', 'invoice.sent'] }],
      [['--target', 'order:2'], { target: { type: 'order', id: '2' } }],
      [['--source', 'job', '--outcome', 'failure'], { source: 'job', outcome: 'failure' }],
      [['--since', '2026-01-02T03:04:05.678Z', '--until', '2026-01-03'], { from: '2026-01-02T03:04:05.678Z', to: '2026-01-03T00:00:00Z' }],
    ];
    for (const [args, query] of cases) {
      for (const format of ['jsonl', 'csv'] as const) {
        const run = await cli('export', ...url, '--format', format, ...args);
        expect(run.stderr).toBe('');
        expect(run.code).toBe(0);
        const expected = await text(t.audit.export(query, { format }));
        expect(expected.split('\n').filter(Boolean).length, args.join(' ')).toBeGreaterThan(format === 'csv' ? 1 : 0);
        expect(run.stdout, `${format} ${args.join(' ')}`).toBe(expected);
      }
    }
  });

  // Arguments are checked before any database is opened: once is enough.
  it.runIf(kind === 'sqlite')('CLI: a value it cannot use is exit code 2 with the reason', async () => {
    const bad: Array<[string[], RegExp]> = [
      [['--format', 'xml'], /--format must be jsonl or csv, got "xml"/],
      [['--since', 'yesterday'], /--since "yesterday" is not an ISO 8601 date or time/],
      [['--until', '2026-02-31'], /--until "2026-02-31" is not an ISO 8601 date or time/],
      [['--since', '2026-02-01', '--until', '2026-01-01'], /--since must be before --until/],
      [['--target', 'order'], /--target "order" is not <type>:<id>/],
      [['--outcome', 'maybe'], /--outcome must be one of success, failure, unknown, got "maybe"/],
      [['--actor', ''], /--actor needs a value/],
      [['--kind', 'intent'], /Unknown option '--kind'/],
    ];
    const runs = await Promise.all(bad.map(([args]) => cli('export', ...url, ...args)));
    for (const [i, [args, message]] of bad.entries()) {
      expect(runs[i]!.stderr, args.join(' ')).toMatch(message);
      expect(runs[i]!.stdout).toBe('');
      expect(runs[i]!.code).toBe(2);
    }
    const unreachable = await cli('export', '--url', 'postgres://nobody@127.0.0.1:1/none');
    expect(unreachable.stderr).toMatch(/Cannot connect to postgres:\/\/nobody@127\.0\.0\.1:1\/none/);
    expect(unreachable.code).toBe(2);
  });

  describe('20,000 events', () => {
    const TOTAL = 20_000;
    const PAGE = 1_000;

    beforeAll(async () => {
      // Seven events per millisecond: the pages split ties on occurredAt, ordered by id.
      const base = Date.parse('2026-03-01T00:00:00.000Z');
      const rows = Array.from({ length: TOTAL }, (_, i) => {
        const at = base + Math.floor(i / 7);
        return row({ id: uuidv7(at), occurredAt: new Date(at), action: 'bulk.row', reason: `row ${i}`, context: { i, pad: 'x'.repeat(200) } });
      });
      for (let i = 0; i < rows.length; i += 500) await insert(rows.slice(i, i + 500));
    }, 120_000);

    it('reads a page only when a slow consumer has taken the rows before it, and ends with every row in order', async () => {
      let read = 0;
      let consumed = 0;
      let ahead = 0;
      const counter: EntitySubscriberInterface = {
        afterQuery: (event: AfterQueryEvent) => {
          // The export's reads of the rows (not the integrator's, which sequences rows in a transaction).
          if (!/^\s*SELECT/i.test(event.query) || !event.parameters?.includes('bulk.row') || event.queryRunner?.isTransactionActive) return;
          const raw = event.rawResults as unknown[] | { rows?: unknown[] } | undefined;
          read += Array.isArray(raw) ? raw.length : (raw?.rows?.length ?? 0);
          ahead = Math.max(ahead, read - consumed);
        },
      };
      t.dataSource.subscribers.push(counter);
      const ids: string[] = [];
      let partial = '';
      try {
        const slow = new Writable({
          highWaterMark: 1024,
          write(chunk: Buffer, _encoding, done) {
            const lines = (partial + chunk.toString('utf8')).split('\n');
            partial = lines.pop()!;
            for (const line of lines) ids.push((JSON.parse(line) as { id: string }).id);
            consumed += lines.length;
            setImmediate(done);
          },
        });
        await pipeline(t.audit.export({ action: 'bulk.row' }), slow);
      } finally {
        t.dataSource.subscribers.splice(t.dataSource.subscribers.indexOf(counter), 1);
      }
      expect(read).toBe(TOTAL);
      expect(consumed).toBe(TOTAL);
      // A page in hand, and the stream's small buffer: never the next pages.
      expect(ahead).toBeGreaterThanOrEqual(PAGE);
      expect(ahead).toBeLessThanOrEqual(2 * PAGE);
      const stored = (await t.rows()).filter((r) => r.action === 'bulk.row').map((r) => r.id);
      expect(ids).toEqual(stored);
      expect(new Set(ids).size).toBe(TOTAL);
    }, 120_000);

    it('destroys the stream with the database error when a page cannot be read', async () => {
      const table = escapedTable(t.dataSource, t.dataSource.getMetadata(AuditLogEntity));
      const away = table.replace(/audit_log(["`]?)$/, 'audit_log_away$1');
      const stream = t.audit.export({ action: 'bulk.row' });
      // The first line is there: the first page is read, the next one is not.
      await once(stream, 'readable');
      const first = stream.read() as Buffer;
      expect(first.toString('utf8')).toMatch(/^\{"action":"bulk\.row"/);
      await t.dataSource.query(`ALTER TABLE ${table} RENAME TO ${t.dataSource.driver.escape('audit_log_away')}`);
      try {
        await expect(text(stream)).rejects.toThrow(/audit_log/);
        expect(stream.destroyed).toBe(true);
      } finally {
        await t.dataSource.query(`ALTER TABLE ${away} RENAME TO ${t.dataSource.driver.escape('audit_log')}`);
      }
    }, 60_000);
  });
});

describe.each(databases())('export without integrity on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('writes every event ascending by (occurredAt, id), each with "seq":null', async () => {
    for (let i = 0; i < 5; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
    const rows = await t.rows();
    expect(rows).toHaveLength(5);
    const lines = (await text(t.audit.export())).split('\n').filter(Boolean);
    expect(lines).toEqual(rows.map((r) => canonicalJson({ ...(JSON.parse(canonicalEventJson(r)) as object), seq: null })));
    expect(() => exportEventLine(rows[0]!)).toThrow(/has no seq/);
  });
});
