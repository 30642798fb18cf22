import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliProcessWith } from '../support/integrity.js';

// A database URL whose driver package the user has not installed (the CLI runs in their
// project, with only the driver of the database they use): a usage problem, exit code 2 as
// for any database that cannot be opened — not 1 (problems found) with a stack trace.
describe('the command line without the driver package of the URL it is given', () => {
  const dir = mkdtempSync(join(tmpdir(), 'audit-cli-driver-'));
  const key = join(dir, 'audit.pem');
  writeFileSync(key, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const hidden = (packages: string) => ({ node: ['--import', './test/support/hide-packages.mjs'], env: { HIDE_PACKAGES: packages } });

  it.each([
    ['postgres://auditor:s3cret@127.0.0.1:5432/test', 'pg', 'pg'],
    ['mysql://auditor:s3cret@127.0.0.1:3306/test', 'mysql2', 'mysql2'],
    ['mariadb://auditor:s3cret@127.0.0.1:3306/test', 'mysql2', 'mysql2'],
    [`sqlite:${join(dir, 'audit.sqlite')}`, 'better-sqlite3', 'better-sqlite3'],
  ])('%s without %s: exit code 2 and the package to install', async (url, packages, driver) => {
    for (const command of [
      ['verify', '--url', url, '--public-key', key],
      ['export', '--url', url],
      ['prove', '0190a7c2-0000-7000-8000-000000000000', '--url', url],
    ]) {
      const run = await cliProcessWith(hidden(packages), ...command);
      expect({ command: command[0], code: run.code }).toEqual({ command: command[0], code: 2 });
      expect(run.stderr).toContain(`its driver package ${driver} is not installed (npm install ${driver})`);
      expect(run.stderr).not.toContain('s3cret');
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(run.stdout).toBe('');
    }
  });
});
