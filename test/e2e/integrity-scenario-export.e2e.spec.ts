// Acceptance scenarios of `npx nestjs-system-audit verify --events`: an auditor given an
// export, the anchored checkpoints file and the verifier key, and an export or checkpoints
// file edited before it reached them.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileAnchor } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cliProblemBriefs, cliProcess } from '../support/integrity.js';
import { checkpointBody, independentVerifierKey, scenarioDatabase, signNoteIndependently, type ScenarioDatabase } from '../support/integrity-scenario.js';
import { databases } from '../support/test-database.js';

const ORIGIN = 'intS.example.test/export';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);

describe.each(databases())('scenario: an auditor checks an edited export, from %s', (kind) => {
  let dir: string;
  let sdb: ScenarioDatabase;
  let t: TestApp;
  let anchorFile: string;
  let lines: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-export-'));
    sdb = await scenarioDatabase(kind, dir);
    anchorFile = join(dir, 'intS-anchor.txt');
    t = await createTestApp({
      db: sdb.db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 }, anchor: fileAnchor(anchorFile) } },
    });
    for (let n = 1; n <= 10; n++) {
      await t.audit.log({ action: 'invoice.issued', reason: `invoice ${n}`, target: { type: 'invoice', id: String(n) } });
      if ([3, 7, 10].includes(n)) await t.audit.checkpoint();
    }
    const exported = join(dir, 'intS-export.jsonl');
    const run = await cliProcess('export', ...sdb.url, '--out', exported);
    expect(run.code, run.stderr).toBe(0);
    lines = readFileSync(exported, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(10);
  });
  afterAll(async () => {
    await t?.close();
    await sdb?.db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function check(edited: string[], checkpoints = anchorFile): Promise<{ code: number | null; briefs: string[]; out: string }> {
    const file = join(dir, `intS-${randomUUID()}.jsonl`);
    writeFileSync(file, edited.map((line) => `${line}\n`).join(''));
    const run = await cliProcess('verify', '--events', file, '--checkpoints', checkpoints, '--public-key', VKEY);
    return { code: run.code, briefs: run.code === 2 ? [] : cliProblemBriefs(run.stdout), out: run.stdout + run.stderr };
  }
  const withSeq = (line: string, seq: number) => line.replace(/"seq":\d+/, `"seq":${seq}`);

  it('the export as written verifies', async () => {
    const found = await check(lines);
    expect(found.code, found.out).toBe(0);
  });

  it('one line changed: the first checkpoint over it is modified', async () => {
    const edited = [...lines];
    edited[4] = edited[4]!.replace('"reason":"invoice 5"', '"reason":"invoice 5!"');
    const found = await check(edited);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs[0], found.out).toBe('modified treeSize=7');
  });

  it('a line in the middle removed: missing at its seq', async () => {
    const found = await check(lines.filter((_, i) => i !== 5));
    expect(found.code, found.out).toBe(1);
    expect(found.briefs, found.out).toContain('missing seq=6');
  });

  it('two lines traded places (each keeping its seq line order): reordered', async () => {
    const edited = [...lines];
    [edited[4], edited[5]] = [edited[5]!, edited[4]!];
    const found = await check(edited);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs.some((brief) => brief.startsWith('reordered')), found.out).toBe(true);
  });

  it('the contents of two lines traded, their seqs renumbered in order: the checkpoint over them is modified', async () => {
    const edited = [...lines];
    [edited[4], edited[5]] = [withSeq(lines[5]!, 5), withSeq(lines[4]!, 6)];
    const found = await check(edited);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs[0], found.out).toBe('modified treeSize=7');
  });

  it('a line given twice: reordered', async () => {
    const found = await check([...lines.slice(0, 5), lines[4]!, ...lines.slice(5)]);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs.some((brief) => brief.startsWith('reordered')), found.out).toBe(true);
  });

  it('a forged line slipped in, the later seqs moved up: the checkpoint over it is modified', async () => {
    const forged = withSeq(lines[1]!, 4)
      .replace(/"id":"[^"]+"/, `"id":"${randomUUID()}"`)
      .replace('"reason":"invoice 2"', '"reason":"forged"');
    const edited = [...lines.slice(0, 3), forged, ...lines.slice(3).map((line, i) => withSeq(line, i + 5))];
    const found = await check(edited);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs[0], found.out).toBe('modified treeSize=7');
  });

  it('a checkpoint in the file with its signature altered: bad-signature at its tree size', async () => {
    const text = readFileSync(anchorFile, 'utf8');
    const seven = text.split('\n\n').findIndex((part) => part.split('\n')[1] === '7');
    expect(seven).toBeGreaterThanOrEqual(0);
    const parts = text.split('\n\n');
    const signature = parts[seven + 1]!;
    const bytes = Buffer.from(signature.slice(signature.lastIndexOf(' ') + 1), 'base64');
    bytes[12] = bytes[12]! ^ 0x02;
    parts[seven + 1] = `${signature.slice(0, signature.lastIndexOf(' ') + 1)}${bytes.toString('base64')}`;
    const file = join(dir, `intS-${randomUUID()}.txt`);
    writeFileSync(file, parts.join('\n\n'));
    const found = await check(lines, file);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs, found.out).toEqual(['bad-signature seq=7 treeSize=7']);
  });

  it('a validly signed checkpoint in the file that does not extend its predecessor: inconsistent', async () => {
    const text = readFileSync(anchorFile, 'utf8');
    const notes = text.split(/\n\n(?=intS\.example)/);
    const index = notes.findIndex((note) => note.split('\n')[1] === '7');
    notes[index] = signNoteIndependently(checkpointBody(ORIGIN, 7, Buffer.alloc(32, 0x11)), ORIGIN, privateKey).trimEnd();
    const file = join(dir, `intS-${randomUUID()}.txt`);
    writeFileSync(file, notes.map((note) => note.trimEnd()).join('\n\n') + '\n\n');
    const found = await check(lines, file);
    expect(found.code, found.out).toBe(1);
    expect(found.briefs, found.out).toEqual(['inconsistent seq=7 treeSize=7']);
  });

  it('the last lines removed: truncated from the first seq missing', async () => {
    const found = await check(lines.slice(0, 8));
    expect(found.code, found.out).toBe(1);
    expect(found.briefs, found.out).toEqual(['truncated seq=9', 'truncated seq=10']);
  });

  it('events not sequenced yet are exported with a null seq, passed over by verify --events, and not provable from the command line', async () => {
    const pending = await t.audit.log({ action: 'invoice.issued', reason: 'pending' });
    const exported = join(dir, `intS-${randomUUID()}.jsonl`);
    expect((await cliProcess('export', ...sdb.url, '--out', exported)).code).toBe(0);
    const all = readFileSync(exported, 'utf8').trimEnd().split('\n');
    expect(all).toHaveLength(11);
    expect(all[10]).toContain('"seq":null');
    const run = await cliProcess('verify', '--events', exported, '--checkpoints', anchorFile, '--public-key', VKEY);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect((await cliProcess('prove', pending, ...sdb.url)).code).toBe(1);
  });
});
