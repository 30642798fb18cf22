// Acceptance scenarios of tamper evidence after a retention purge: the purged prefix is
// not reported, what an administrator does past it still is, and proofs of the events
// kept still check.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, verifyInclusion } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cliProblemBriefs, cliProcess, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { independentVerifierKey, scenarioDatabase } from '../support/integrity-scenario.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'intS.example.test/purge';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(databases())('scenario: tampering after a retention purge, on %s', (kind) => {
  let dir: string;
  let db: TestDatabase;
  let url: string[];
  let t: TestApp;
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-purge-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    ({ db, url } = await scenarioDatabase(kind, dir));
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
    for (let n = 1; n <= 5; n++) await t.audit.log({ action: 'invoice.issued', reason: `invoice ${n}` });
    await t.audit.checkpoint();
    await pause(30);
    const cut = new Date();
    await pause(30);
    for (let n = 6; n <= 10; n++) await t.audit.log({ action: 'invoice.issued', reason: `invoice ${n}` });
    await t.audit.checkpoint();
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const purged = await t.audit.purge({ before: cut });
    expect(purged).toMatchObject({ deleted: 5, throughSeq: 5 });
    await t.audit.checkpoint();
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const log = () => t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');

  async function expectProblems(expected: string[]): Promise<void> {
    const result = await t.audit.verify();
    expect(problemBriefs(result.problems), JSON.stringify(result.problems)).toEqual(expected);
    expect(result.purgedThrough).toBe(5);
    const run = await cliProcess('verify', ...url, '--public-key', VKEY);
    expect(run.code, run.stdout + run.stderr).toBe(expected.length ? 1 : 0);
    expect(cliProblemBriefs(run.stdout)).toEqual(expected);
  }

  it('untouched after the purge: ok; the kept events are provable; the export verifies', async () => {
    await expectProblems([]);
    const proof = await t.audit.prove(rows[7]!.id);
    expect(verifyInclusion(proof, VKEY)).toBe(true);
    const exported = join(dir, `intS-${randomUUID()}.jsonl`);
    expect((await cliProcess('export', ...url, '--out', exported)).code).toBe(0);
    const checkpoints = join(dir, `intS-${randomUUID()}.txt`);
    expect((await cliProcess('checkpoints', ...url, '--out', checkpoints)).code).toBe(0);
    const run = await cliProcess('verify', '--events', exported, '--checkpoints', checkpoints, '--public-key', VKEY);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  describe('with the triggers dropped', () => {
    beforeEach(async () => {
      await dropAppendOnlyGuards(t.dataSource);
    });

    it('the first kept event deleted, as if purged too: missing at its seq', async () => {
      await t.dataSource.query(`DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [6]);
      await expectProblems(['missing seq=6']);
    });

    it('a kept event changed: modified at its seq', async () => {
      await t.dataSource.query(`UPDATE ${log()} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['invoice 8, waived', 8]);
      await expectProblems(['modified seq=8']);
    });

    it('two kept events swapped: reordered at both seqs', async () => {
      await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [-1, 7]);
      await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [7, 8]);
      await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [8, -1]);
      await expectProblems(['reordered seq=7', 'reordered seq=8']);
    });
  });
});
