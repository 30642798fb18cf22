// The command line given input it cannot use: a public key that is not Ed25519 (an RSA or
// EC key in PEM), a database URL whose password holds characters the masking did not
// expect or travels as a query parameter, a day off the calendar in --since. Each is a
// clear message and exit code 2 — never a stack trace, an exit code that reads as "the
// proof does not hold", or a password on the terminal. And --out naming the SQLite
// database being read, which opening the output truncated: the trail gone by a typo.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProcess } from '../support/integrity.js';
import type { TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/cli-input';
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe('the command line with input it cannot use', () => {
  let db: TestDatabase;
  let dir: string;
  let url: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-cli-input-'));
    ({ db, url } = await cliDatabase('sqlite', join(dir, 'audit.sqlite')));
    const t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    try {
      for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', target: { type: 'order', id: String(i) } });
      await t.audit.checkpoint();
      writeFileSync(join(dir, 'proof.json'), JSON.stringify(await t.audit.prove((await t.rows())[1]!.id)));
    } finally {
      await t.close();
    }
    writeFileSync(join(dir, 'rsa.pem'), generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'ec.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'ed25519.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    await cli('export', ...url, '--out', join(dir, 'audit.jsonl'));
    await cli('checkpoints', ...url, '--out', join(dir, 'checkpoints.txt'));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a PEM key that is not Ed25519 with exit code 2, in every command that takes keys', async () => {
    for (const [file, type] of [
      ['rsa.pem', 'rsa'],
      ['ec.pem', 'ec'],
    ] as const) {
      const key = join(dir, file);
      const message = `nestjs-system-audit verify-proof: --public-key ${key}: the key is ${type}, not Ed25519 (checkpoints are signed with Ed25519 keys)`;
      const proof = await cli('verify-proof', join(dir, 'proof.json'), '--public-key', key);
      expect(proof.code).toBe(2);
      expect(proof.stdout).toBe('');
      expect(proof.stderr).toContain(message);
      for (const args of [url, ['--events', join(dir, 'audit.jsonl'), '--checkpoints', join(dir, 'checkpoints.txt')]]) {
        const run = await cli('verify', ...args, '--public-key', key);
        expect(run.code).toBe(2);
        expect(run.stdout).toBe('');
        expect(run.stderr).toContain(message.replace('verify-proof', 'verify'));
      }
    }
    // The Ed25519 public key in PEM still verifies.
    expect(await cli('verify-proof', join(dir, 'proof.json'), '--public-key', join(dir, 'ed25519.pem'))).toMatchObject({ code: 0 });
    expect(await cli('verify', ...url, '--public-key', join(dir, 'ed25519.pem'))).toMatchObject({ code: 0 });
  });

  it('as a process: a message and exit code 2, no stack trace', async () => {
    const run = await cliProcess('verify-proof', join(dir, 'proof.json'), '--public-key', join(dir, 'rsa.pem'));
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('the key is rsa, not Ed25519');
    expect(run.stderr).not.toMatch(/^\s+at /m);
  });

  it('never prints the password of a database URL it cannot connect with', async () => {
    const cases: Array<[string, string, string]> = [
      // A password with a slash or an at sign the URL did not percent-encode.
      ['postgres://audit:s3cr/et@127.0.0.1:1/audit', 's3cr', 'postgres://audit:***@127.0.0.1:1/audit'],
      ['postgres://audit:p@ss@127.0.0.1:1/audit', 'ss@', 'postgres://audit:***@127.0.0.1:1/audit'],
      ['mysql://root:hunter2@127.0.0.1:1/audit', 'hunter2', 'mysql://root:***@127.0.0.1:1/audit'],
      // A password as a query parameter (node-postgres and mysql2 both read it there).
      ['postgres://audit@127.0.0.1:1/audit?password=hunter3&sslmode=disable', 'hunter3', 'postgres://audit@127.0.0.1:1/audit?password=***&sslmode=disable'],
      ['mariadb://root@127.0.0.1:1/audit?ssl=false&password=hunter4', 'hunter4', 'mariadb://root@127.0.0.1:1/audit?ssl=false&password=***'],
    ];
    for (const [databaseUrl, secret, shown] of cases) {
      const run = await cli('verify', '--url', databaseUrl, '--public-key', VKEY);
      expect(run.code, databaseUrl).toBe(2);
      expect(run.stderr, databaseUrl).toContain(`Cannot connect to ${shown}`);
      expect(run.stderr + run.stdout, databaseUrl).not.toContain(secret);
    }
    const unknown = await cli('verify', '--url', 'ftp://ops:pa/ss@example.test/x', '--public-key', VKEY);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--url "ftp://ops:***@example.test/x" is not a database URL');
  });

  it('refuses --since and --until on a day off the calendar, with a zone too', async () => {
    for (const value of ['2026-02-30T10:00:00Z', '2026-02-29', '2026-04-31T00:00+02:00', '2026-01-01T24:00Z']) {
      const run = await cli('export', ...url, '--since', value);
      expect(run.code, value).toBe(2);
      expect(run.stdout, value).toBe('');
      expect(run.stderr, value).toContain(`--since ${JSON.stringify(value)} is not an ISO 8601 date or time`);
    }
    const run = await cli('export', ...url, '--since', '2024-02-29T23:00+01:00', '--until', '2100-01-01');
    expect(run.code).toBe(0);
    expect(run.stdout.trimEnd().split('\n')).toHaveLength(3);
  });

  it('refuses --out naming the SQLite database it reads (which it would truncate), by any path to it', async () => {
    const database = join(dir, 'audit.sqlite');
    const before = readFileSync(database);
    symlinkSync(database, join(dir, 'link.sqlite'));
    for (const command of ['export', 'checkpoints']) {
      for (const out of [database, join(dir, '.', 'audit.sqlite'), join(dir, 'link.sqlite')]) {
        const run = await cli(command, ...url, '--out', out);
        expect(run.code, `${command} ${out}`).toBe(2);
        expect(run.stderr).toContain(`--out ${out} is the database being read: write elsewhere`);
      }
    }
    const proved = await cli('prove', '00000000-0000-7000-8000-000000000000', ...url, '--out', database);
    expect(proved.code).toBe(2);
    expect(readFileSync(database).equals(before)).toBe(true);
    expect((await cli('verify', ...url, '--public-key', VKEY)).code).toBe(0);
  });
});
