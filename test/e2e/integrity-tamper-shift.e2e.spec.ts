// Tampering that moves events to other seqs to hide an insertion or a deletion: the
// administrator drops the append-only triggers, then shifts the later rows by one. verify()
// and `npx nestjs-system-audit verify` must name the forged or the deleted event, and call
// the genuine events that were only moved `reordered`, never `inserted`, `modified` or
// `truncated`. The log is written by the module itself (12 events, checkpoints at 4, 8, 12).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditIntegrityProblem } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProblemBriefs, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/tamper-shift';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('events moved to other seqs, found by verify on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let rows: AuditLogEntity[];
  /** `e<seq>` for the id of each genuine event (its seq as written), `FORGED` for a forged one. */
  let names: Map<string, string>;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-tamper-shift-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({
      db,
      adapter: 'express',
      // The background integrator waits, so that nothing runs between the tampering and verify().
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
    for (let batch = 0; batch < 3; batch++) {
      for (let i = 0; i < 4; i++) await t.audit.log({ action: 'order.noted', reason: `note ${batch * 4 + i + 1}`, target: { type: 'order', id: String(batch * 4 + i + 1) } });
      await t.audit.checkpoint();
    }
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    names = new Map(rows.map((row) => [row.id, `e${row.seq}`]));
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const table = () => t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t.dataSource.query(text, params);

  /** Moves the rows of seqs `from…to` by `by`, one row at a time (so that seq stays unique). */
  async function shiftSeqs(from: number, to: number, by: number): Promise<void> {
    const seqs = Array.from({ length: to - from + 1 }, (_, i) => from + i);
    for (const seq of by > 0 ? seqs.reverse() : seqs) await sql(`UPDATE ${table()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [seq + by, seq]);
  }

  async function insertForged(seq: number): Promise<void> {
    const repo = t.dataSource.getRepository(AuditLogEntity);
    const forged = repo.create({ ...rows[0]!, id: randomUUID(), reason: 'forged refund', seq });
    await repo.save(forged);
    names.set(forged.id, 'FORGED');
  }

  const brief = (problems: ReadonlyArray<AuditIntegrityProblem>): string[] => problemBriefs(problems, names);
  const briefCli = (stdout: string): string[] => cliProblemBriefs(stdout, names);

  /** verify() and the CLI against the database report exactly `expected`. */
  async function expectProblems(expected: string[]): Promise<void> {
    const result = await t.audit.verify();
    expect(brief(result.problems)).toEqual(expected);
    expect(result.ok).toBe(false);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.code, run.stderr).toBe(1);
    expect(briefCli(run.stdout)).toEqual(expected);
  }

  /** What the CLI reports for a JSON Lines export of the log as it is now (no tree: checkpoints and seqs only). */
  async function exportProblems(): Promise<string[]> {
    const file = join(dir, `${randomUUID()}.jsonl`);
    const exported = await cli('export', ...url, '--out', file);
    expect(exported.code, exported.stderr).toBe(0);
    const checkpoints = join(dir, `${randomUUID()}.txt`);
    const written = await cli('checkpoints', ...url, '--out', checkpoints);
    expect(written.code, written.stderr).toBe(0);
    const run = await cli('verify', '--events', file, '--checkpoints', checkpoints, '--public-key', VKEY);
    expect(run.code, run.stderr).toBe(1);
    return briefCli(run.stdout);
  }

  it('a forged row inserted at seq 5, the later rows moved up by one: inserted names the forged row; the moved events are reordered', async () => {
    await shiftSeqs(5, 12, +1);
    await insertForged(5);
    await expectProblems([
      'inserted seq=5 id=FORGED',
      ...Array.from({ length: 8 }, (_, i) => `reordered seq=${i + 6} id=e${i + 5}`),
    ]);
    // An export has no tree to tell which event moved: the first checkpoint over the change does not hash.
    expect(await exportProblems()).toEqual(['modified treeSize=8']);
  });

  it('the row of seq 4 deleted, the later rows moved down by one: missing names it; the moved events are reordered, none truncated', async () => {
    await sql(`DELETE FROM ${table()} WHERE ${q('seq')} = ${p(1)}`, [4]);
    await shiftSeqs(5, 12, -1);
    await expectProblems([
      'missing seq=4 id=e4',
      ...Array.from({ length: 8 }, (_, i) => `reordered seq=${i + 4} id=e${i + 5}`),
    ]);
    // An export: the checkpoint over the change does not hash, and it is one event short of the last checkpoint.
    expect(await exportProblems()).toEqual(['modified treeSize=4', 'truncated seq=12']);
  });

  it('a row deleted and a forged row given its seq: missing names the deleted event, inserted the forged one', async () => {
    await sql(`DELETE FROM ${table()} WHERE ${q('seq')} = ${p(1)}`, [6]);
    await insertForged(6);
    await expectProblems(['missing seq=6 id=e6', 'inserted seq=6 id=FORGED']);
  });

  it('one row moved to the end of the log (its seq left empty): reordered at its new seq, not missing or inserted', async () => {
    await shiftSeqs(3, 3, 10);
    await expectProblems(['reordered seq=13 id=e3']);
  });
});
