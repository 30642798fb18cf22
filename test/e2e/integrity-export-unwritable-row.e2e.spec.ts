// A row anyone with INSERT on audit_log (the application's own role) can write, which no
// export line can say as stored: a JSON number outside the double range, e.g.
// {"amount":1e400}, which every database's JSON column accepts. The export leaves it out
// and says so (the API's stream emits `skipped`, the CLI names it on standard error and
// exits 2), and writes every other event.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditExportSkipped } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProcess } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/export-unwritable';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('export with a row inserted by hand that cannot be written on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let id: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'export-unwritable-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } } });
    for (let i = 0; i < 5; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    await t.audit.checkpoint();
    // An INSERT, which the append-only guards allow.
    const q = (name: string) => t.dataSource.driver.escape(name);
    const log = t.dataSource.getMetadata('AuditLogEntity').tablePath.split('.').map(q).join('.');
    const cols = ['id', 'occurred_at', 'action', 'outcome', 'kind', 'actor_type', 'source', 'context'];
    const params = cols.map((_, i) => (kind === 'postgres' ? `$${i + 1}` : '?')).join(', ');
    id = randomUUID();
    await t.dataSource.query(`INSERT INTO ${log} (${cols.map(q).join(', ')}) VALUES (${params})`, [
      id, kind === 'sqlite' ? '2026-01-01 00:00:00.000' : new Date(), 'order.noted', 'success', 'event', 'user', 'manual', '{"amount":1e400}',
    ]);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the CLI export writes the trail and names the row left out on standard error (exit code 2, no stack trace)', async () => {
    const out = join(dir, `export-${randomUUID()}.jsonl`);
    const run = await cliProcess('export', ...url, '--out', out);
    expect(run.stderr).not.toMatch(/TypeError|\n\s+at /);
    expect(run.code).not.toBe(1);
    const lines = existsSync(out) ? readFileSync(out, 'utf8').trimEnd().split('\n').filter(Boolean) : [];
    expect(lines.length).toBeGreaterThanOrEqual(5);
    expect(run.code).toBe(2);
    expect(lines).toHaveLength(5);
    expect(run.stderr.split('\n').filter((line) => line.includes(id))).toEqual([expect.stringMatching(new RegExp(`^nestjs-system-audit export: event ${id} left out: .*1e400`))]);
    // The export of the sequenced events verifies against the checkpoints.
    const checkpoints = join(dir, `checkpoints-${randomUUID()}.txt`);
    expect((await cli('checkpoints', ...url, '--out', checkpoints)).code).toBe(0);
    expect((await cli('verify', '--events', out, '--checkpoints', checkpoints, '--public-key', VKEY)).code).toBe(0);
  });

  it('AuditService.export() streams the sequenced events, and emits the row left out as `skipped`', async () => {
    const chunks: string[] = [];
    const skipped: AuditExportSkipped[] = [];
    const outcome = await new Promise<string>((resolve) => {
      const stream = t.audit.export();
      stream.on('skipped', (event: AuditExportSkipped) => skipped.push(event));
      stream.on('data', (chunk: Buffer | string) => chunks.push(String(chunk)));
      stream.on('error', (error: Error) => resolve(`error: ${error.message}`));
      stream.on('end', () => resolve('end'));
    });
    expect(outcome).toBe('end');
    expect(chunks.join('').trimEnd().split('\n').filter((line) => /"seq":\d/.test(line))).toHaveLength(5);
    expect(skipped).toEqual([{ id, seq: null, reason: expect.stringContaining('1e400') }]);
  });

  it('the CSV export leaves it out the same way (its cells would say null for the number)', async () => {
    const skipped: AuditExportSkipped[] = [];
    const stream = t.audit.export({}, { format: 'csv' });
    stream.on('skipped', (event: AuditExportSkipped) => skipped.push(event));
    let text = '';
    for await (const chunk of stream) text += String(chunk);
    expect(text.trimEnd().split('\r\n')).toHaveLength(6); // the header and five events
    expect(skipped.map((event) => event.id)).toEqual([id]);
  });
});
