// `npx nestjs-system-audit verify <database URL>`: the database (or, for verify, the export)
// may be named by the command's argument as well as by --url / --events.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/cli-argument';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('the database URL as the command argument on %s', (kind) => {
  let dir: string;
  let db: TestDatabase;
  let t: TestApp;
  let url: string;
  let rest: string[];
  let ids: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-cli-argument-'));
    let args: string[];
    ({ db, url: args } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    url = args[1]!;
    rest = args.slice(2);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000 } } });
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}` });
    await t.audit.checkpoint();
    ids = (await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).map((row) => row.id);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verify <url>: exit 0 on a sound log, as with --url', async () => {
    const run = await cli('verify', url, ...rest, '--public-key', VKEY);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/3 events/);
  });

  it('prove <id> <url>: the proof, as with --url', async () => {
    const byArgument = await cli('prove', ids[1]!, url, ...rest);
    expect(byArgument.code, byArgument.stderr).toBe(0);
    const byOption = await cli('prove', ids[1]!, '--url', url, ...rest);
    expect(JSON.parse(byArgument.stdout)).toEqual(JSON.parse(byOption.stdout));
  });

  it('export <url> and checkpoints <url>, then verify <export> --checkpoints <file>: exit 0', async () => {
    const events = join(dir, `${randomUUID()}.jsonl`);
    const checkpoints = join(dir, `${randomUUID()}.txt`);
    expect((await cli('export', url, ...rest, '--out', events)).code).toBe(0);
    expect(readFileSync(events, 'utf8').trimEnd().split('\n')).toHaveLength(3);
    expect((await cli('checkpoints', url, ...rest, '--out', checkpoints)).code).toBe(0);
    const run = await cli('verify', events, '--checkpoints', checkpoints, '--public-key', VKEY);
    expect(run.code, run.stderr).toBe(0);
  });

  it('refuses a database named twice, or an extra argument, with exit code 2', async () => {
    expect((await cli('verify', url, '--url', url, ...rest, '--public-key', VKEY)).code).toBe(2);
    expect((await cli('export', url, 'more', ...rest)).code).toBe(2);
    expect((await cli('prove', ids[0]!, url, 'more', ...rest)).code).toBe(2);
    const twice = await cli('checkpoints', 'mysql://auditor:s3cret@127.0.0.1:1/x', '--url', url, ...rest);
    expect(twice.code).toBe(2);
    expect(twice.stderr).not.toContain('s3cret');
  });
});

// A password holding a character URLs reserve, not percent-encoded: the driver reads
// another host (`root` in `postgres://root:pa/ss@host/db`); the message says what to do.
describe('a database URL whose password is not percent-encoded', () => {
  it.each([
    ['postgres://root:pa/ss@127.0.0.1:5432/test'],
    ['mysql://root:p@ss@127.0.0.1:3306/test'],
    ['mariadb://root:pa#ss@127.0.0.1:3306/test'],
  ])('%s: exit code 2, the hint to percent-encode, never the password', async (url) => {
    const run = await cli('export', '--url', url);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('percent-encode');
    expect(run.stderr).not.toMatch(/pa\/ss|p@ss|pa#ss/);
  });

  it('a URL without such characters gets no hint', async () => {
    const run = await cli('export', '--url', 'postgres://nobody-such-user@127.0.0.1:5432/test');
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain('percent-encode');
  });
});
