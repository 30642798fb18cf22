// `verify --events` and `verify-proof --events` read an export line by line: each line is
// the canonical JSON export() writes. A line with a member given twice (JSON.parse keeps the
// last: a forged value put first, where a reader of the text sees it, left the event
// hashing to its leaf) or otherwise not in that form is not an export line: refused, naming
// the line, exit code 2 — not "OK".
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp } from '../app/create-test-app.js';
import { cli, cliDatabase } from '../support/integrity.js';
import type { TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/export-lines';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe('verify --events with lines that are not as export() wrote them', () => {
  let db: TestDatabase;
  let dir: string;
  let lines: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-export-lines-'));
    let url: string[];
    ({ db, url } = await cliDatabase('sqlite', join(dir, 'audit.sqlite')));
    const t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    try {
      for (let i = 0; i < 4; i++) await t.audit.log({ action: 'payment.approved', reason: `approved by alice ${i}`, target: { type: 'payment', id: String(i) } });
      await t.audit.checkpoint();
      writeFileSync(join(dir, 'proof.json'), JSON.stringify(await t.audit.prove((await t.rows())[1]!.id)));
    } finally {
      await t.close();
    }
    expect((await cli('export', ...url, '--out', join(dir, 'audit.jsonl'))).code).toBe(0);
    expect((await cli('checkpoints', ...url, '--out', join(dir, 'checkpoints.txt'))).code).toBe(0);
    lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trimEnd().split('\n');
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const verify = (file: string) => cli('verify', '--events', file, '--checkpoints', join(dir, 'checkpoints.txt'), '--public-key', VKEY);

  it('the export as written verifies', async () => {
    expect(await verify(join(dir, 'audit.jsonl'))).toMatchObject({ code: 0 });
  });

  it('refuses a line with a member given twice, naming the line, in verify and verify-proof', async () => {
    // What a reader of the text sees first: the forged reason. JSON.parse keeps the second.
    const forged = lines[1]!.replace('{', '{"reason":"approved by mallory",');
    expect(JSON.parse(forged)).toEqual(JSON.parse(lines[1]!));
    const file = join(dir, 'repeated.jsonl');
    writeFileSync(file, `${[lines[0], forged, ...lines.slice(2)].join('\n')}\n`);
    const message = `Malformed audit export ${file}, line 2: not the canonical JSON of an export line (a member repeated or out of order, or the text reformatted)`;
    const run = await verify(file);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(message);
    const proof = await cli('verify-proof', join(dir, 'proof.json'), '--public-key', VKEY, '--events', file);
    expect(proof.code).toBe(2);
    expect(proof.stdout).not.toContain('OK');
    expect(proof.stderr).toContain(message);
  });

  it('refuses a line reformatted or with its members reordered', async () => {
    const parsed = JSON.parse(lines[2]!) as Record<string, unknown>;
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(parsed).reverse()));
    for (const [name, line] of [
      ['spaced', JSON.stringify(parsed, null, 1).replaceAll('\n', '')],
      ['reordered', reordered],
    ] as const) {
      const file = join(dir, `${name}.jsonl`);
      writeFileSync(file, `${[lines[0], lines[1], line, ...lines.slice(3)].join('\n')}\n`);
      const run = await verify(file);
      expect(run.code, name).toBe(2);
      expect(run.stderr, name).toContain(`${file}, line 3: not the canonical JSON of an export line`);
    }
  });
});
