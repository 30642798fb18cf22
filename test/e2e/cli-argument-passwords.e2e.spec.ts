// The database URL as the command's argument: a password given on the command line must
// never be echoed back, whichever way the argument is mistaken.
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../support/integrity.js';

const SECRET = 'rvS3cretPw';
const dir = mkdtempSync(join(tmpdir(), 'rv-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = join(dir, 'audit.pem');
writeFileSync(keyFile, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
const checkpoints = join(dir, 'checkpoints.txt');
writeFileSync(checkpoints, '');

describe('CLI positional database URL', () => {
  it('export <url> <second url>: the "unexpected argument" error does not echo the second URL\'s password', async () => {
    const run = await cli('export', `sqlite:${join(dir, 'a.sqlite')}`, `postgres://auditor:${SECRET}@127.0.0.1:1/x`);
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain(SECRET);
  });

  it('prove <url> (the id forgotten, as in "prove <id> <url>"): the usage error does not echo the password', async () => {
    const run = await cli('prove', `postgres://auditor:${SECRET}@127.0.0.1:1/x`);
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain(SECRET);
  });

  it('verify <url with a scheme the CLI does not know>: not read as an export path echoing the password', async () => {
    const run = await cli('verify', `postgresql+ssl://auditor:${SECRET}@127.0.0.1:1/x`, '--checkpoints', checkpoints, '--public-key', keyFile);
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain(SECRET);
  });

  it('verify <mysql2:// url> (a common driver-name typo): refused as a URL, without the password', async () => {
    const run = await cli('verify', `mysql2://auditor:${SECRET}@127.0.0.1:1/x`, '--checkpoints', checkpoints, '--public-key', keyFile);
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain(SECRET);
  });
});
