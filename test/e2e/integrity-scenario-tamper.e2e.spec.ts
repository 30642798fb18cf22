// Acceptance scenarios of tamper evidence: a database administrator changes the audit
// tables with plain SQL (after dropping the append-only triggers), and both
// AuditService.verify() and `npx nestjs-system-audit verify` (a child process, as a user
// runs it) name the kind and the seq of what was done. The tables carry an entity prefix,
// the PostgreSQL schema and MariaDB database a mixed-case name.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditLogEntity, AuditTreeEntity, fileAnchor, readCheckpointsFile, type AuditIntegrityProblem } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliProblemBriefs, cliProcess, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { checkpointBody, independentVerifierKey, scenarioDatabase, signNoteIndependently } from '../support/integrity-scenario.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'intS.example.test/tamper';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);
const EVENTS = 10;
const CHECKPOINTS = [3, 7, 10];

describe.each(databases())('scenario: an administrator tampers with the audit tables by hand, on %s', (kind) => {
  let dir: string;
  let db: TestDatabase;
  let url: string[];
  let t: TestApp;
  let anchorFile: string;
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-tamper-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    ({ db, url } = await scenarioDatabase(kind, dir));
    anchorFile = join(dir, `intS-anchor-${randomUUID()}.txt`);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 }, anchor: fileAnchor(anchorFile) } },
    });
    for (let n = 1; n <= EVENTS; n++) {
      await t.audit.log({ action: 'invoice.issued', reason: `invoice ${n}`, actor: { type: 'user', id: `clerk-${n}` }, target: { type: 'invoice', id: String(n) }, context: { amount: n * 10 } });
      if (CHECKPOINTS.includes(n)) await t.audit.checkpoint();
    }
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const table = (entity: typeof AuditLogEntity | typeof AuditCheckpointEntity | typeof AuditTreeEntity) =>
    t.dataSource.getMetadata(entity).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t.dataSource.query(text, params);
  const log = () => table(AuditLogEntity);
  const idOf = (seq: number) => rows[seq - 1]!.id;

  /** verify() and the CLI report the same problems: `kind seq=… treeSize=…`, and each event's id where one is named. */
  async function expectProblems(expected: string[], extra: { anchored?: boolean; ids?: Array<string | undefined> } = {}): Promise<AuditIntegrityProblem[]> {
    const checkpoints = extra.anchored ? await readCheckpointsFile(anchorFile) : undefined;
    const result = await t.audit.verify(checkpoints ? { checkpoints } : {});
    expect(problemBriefs(result.problems), JSON.stringify(result.problems, null, 1)).toEqual(expected);
    expect(result.ok).toBe(expected.length === 0);
    if (extra.ids) expect(result.problems.map((problem) => problem.id)).toEqual(extra.ids);
    // The command line's main(), in this process; the test of the untouched trail also runs it as `npx` does.
    const run = await cli('verify', ...url, '--public-key', VKEY, ...(extra.anchored ? ['--checkpoints', anchorFile] : []));
    expect(run.code, run.stdout + run.stderr).toBe(expected.length === 0 ? 0 : 1);
    expect(cliProblemBriefs(run.stdout), run.stdout).toEqual(expected);
    if (extra.ids) {
      const printed = run.stdout.trimEnd().split('\n').slice(0, -1).map((line) => /\bid=(\S+)/.exec(line)?.[1]);
      expect(printed).toEqual(extra.ids);
    }
    return result.problems;
  }

  it('untouched, the trail verifies through the API and the CLI', async () => {
    await expectProblems([]);
    const run = await cliProcess('verify', ...url, '--public-key', VKEY, '--checkpoints', anchorFile);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  describe('with the append-only triggers dropped', () => {
    beforeEach(async () => {
      await dropAppendOnlyGuards(t.dataSource);
    });

    it.each([
      ['reason', 'invoice 5 (cancelled)'],
      ['outcome', 'failure'],
      ['actor_id', 'clerk-99'],
      ['context', '{"amount":5000}'],
    ])('1. a changed %s of one row is modified at its seq, with its id', async (column, value) => {
      await sql(`UPDATE ${log()} SET ${q(column)} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [value, 5]);
      await expectProblems(['modified seq=5'], { ids: [idOf(5)] });
    });

    it('2. a deleted row is missing at its seq, with its id', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [6]);
      await expectProblems(['missing seq=6'], { ids: [idOf(6)] });
    });

    it('2b. the first row deleted is missing at seq 1', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [1]);
      await expectProblems(['missing seq=1'], { ids: [idOf(1)] });
    });

    /** Inserts a copy of the row at `fromSeq` with a new id, another reason and the given seq, by plain SQL. */
    async function forge(fromSeq: number, seq: number): Promise<string> {
      const columns = t.dataSource.getMetadata(AuditLogEntity).columns.map((column) => column.databaseName);
      const id = randomUUID();
      const given: Record<string, unknown> = { id, seq, reason: 'forged' };
      const params: unknown[] = [];
      const select = columns.map((c) => (c in given ? (params.push(given[c]), p(params.length)) : q(c))).join(', ');
      params.push(fromSeq);
      await sql(`INSERT INTO ${log()} (${columns.map(q).join(', ')}) SELECT ${select} FROM ${log()} WHERE ${q('seq')} = ${p(params.length)}`, params);
      return id;
    }

    it('3. an inserted forged row past the tree is inserted at the seq it was given', async () => {
      const forged = await forge(2, 11);
      await expectProblems(['inserted seq=11'], { ids: [forged] });
    });

    it('3b. a forged row slipped into the middle, the later seqs moved up: inserted there, the moved events reordered', async () => {
      await sql(`UPDATE ${log()} SET ${q('seq')} = -${q('seq')} WHERE ${q('seq')} >= ${p(1)}`, [5]);
      await sql(`UPDATE ${log()} SET ${q('seq')} = 1 - ${q('seq')} WHERE ${q('seq')} < 0`);
      const forged = await forge(2, 5);
      await expectProblems(['inserted seq=5', 'reordered seq=6', 'reordered seq=7', 'reordered seq=8', 'reordered seq=9', 'reordered seq=10', 'reordered seq=11'], {
        ids: [forged, idOf(5), idOf(6), idOf(7), idOf(8), idOf(9), idOf(10)],
      });
    });

    it('3c. a forged row given a deleted event’s seq: inserted, and the deleted event missing, at that seq', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [4]);
      const forged = await forge(2, 4);
      const problems = await expectProblems(['missing seq=4', 'inserted seq=4'], {});
      expect(problems.find((problem) => problem.kind === 'inserted')!.id).toBe(forged);
      expect(problems.find((problem) => problem.kind === 'missing')!.id).toBe(idOf(4));
    });

    async function swap(a: number, b: number): Promise<void> {
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [-1, a]);
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [a, b]);
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [b, -1]);
    }

    it('4. two rows swapped (inside one checkpoint): reordered at both seqs', async () => {
      await swap(5, 6);
      await expectProblems(['reordered seq=5', 'reordered seq=6'], { ids: [idOf(6), idOf(5)] });
    });

    it('4b. two rows swapped across a checkpoint boundary: reordered at both seqs', async () => {
      await swap(7, 8);
      await expectProblems(['reordered seq=7', 'reordered seq=8'], { ids: [idOf(8), idOf(7)] });
    });

    it('4c. the contents of two rows swapped, each keeping its id and seq: modified at both seqs', async () => {
      const columns = ['reason', 'actor_id', 'target_id', 'context'];
      const [five] = (await sql(`SELECT ${columns.map(q).join(', ')} FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [5])) as Array<Record<string, unknown>>;
      const [six] = (await sql(`SELECT ${columns.map(q).join(', ')} FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [6])) as Array<Record<string, unknown>>;
      const asParam = (value: unknown) => (value !== null && typeof value === 'object' ? JSON.stringify(value) : value);
      const set = columns.map((c, i) => `${q(c)} = ${p(i + 1)}`).join(', ');
      await sql(`UPDATE ${log()} SET ${set} WHERE ${q('seq')} = ${p(columns.length + 1)}`, [...columns.map((c) => asParam(six![c])), 5]);
      await sql(`UPDATE ${log()} SET ${set} WHERE ${q('seq')} = ${p(columns.length + 1)}`, [...columns.map((c) => asParam(five![c])), 6]);
      await expectProblems(['modified seq=5', 'modified seq=6'], { ids: [idOf(5), idOf(6)] });
    });

    it('5. the last rows removed: truncated, against the last checkpoint, from the first seq missing', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} > ${p(1)}`, [8]);
      const problems = await expectProblems(['truncated seq=9', 'truncated seq=10']);
      expect(problems.map((problem) => problem.id)).toEqual([idOf(9), idOf(10)]);
    });

    it('5b. the last rows removed with their tree rows and checkpoint: truncated against the anchored checkpoints', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} > ${p(1)}`, [7]);
      // Every tree row a tree of 7 leaves does not hold.
      await sql(
        `DELETE FROM ${table(AuditTreeEntity)} WHERE (${q('level')} = 0 AND ${q('idx')} >= 7) OR (${q('level')} = 1 AND ${q('idx')} >= 3) OR (${q('level')} = 2 AND ${q('idx')} >= 1) OR ${q('level')} >= 3`,
      );
      await sql(`DELETE FROM ${table(AuditCheckpointEntity)} WHERE ${q('tree_size')} > ${p(1)}`, [7]);
      expect((await t.audit.verify()).ok).toBe(true);
      await expectProblems(['truncated seq=8 treeSize=10'], { anchored: true });
    });

    it('5c. an export one line short of the anchored checkpoints: truncated, by the CLI', async () => {
      const exported = join(dir, `intS-${randomUUID()}.jsonl`);
      const run = await cli('export', ...url, '--out', exported);
      expect(run.code, run.stderr).toBe(0);
      const lines = readFileSync(exported, 'utf8').trimEnd().split('\n');
      expect(lines).toHaveLength(EVENTS);
      const ok = await cli('verify', '--events', exported, '--checkpoints', anchorFile, '--public-key', VKEY);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      writeFileSync(exported, lines.slice(0, -2).join('\n') + '\n');
      const short = await cli('verify', '--events', exported, '--checkpoints', anchorFile, '--public-key', VKEY);
      expect(short.code, short.stdout + short.stderr).toBe(1);
      expect(cliProblemBriefs(short.stdout), short.stdout).toEqual(['truncated seq=9', 'truncated seq=10']);
    });

    async function checkpointNote(size: number): Promise<string> {
      return (await t.dataSource.getRepository(AuditCheckpointEntity).findOneByOrFail({ treeSize: size })).note;
    }

    it("6. a checkpoint's signature altered: bad-signature, at the seq it covers up to, with its tree size", async () => {
      const note = await checkpointNote(7);
      const line = note.trimEnd().split('\n').at(-1)!;
      const signature = Buffer.from(line.slice(line.lastIndexOf(' ') + 1), 'base64');
      signature[20] = signature[20]! ^ 0x01;
      const altered = note.replace(line, `${line.slice(0, line.lastIndexOf(' ') + 1)}${signature.toString('base64')}`);
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, [altered, 7]);
      await expectProblems(['bad-signature seq=7 treeSize=7']);
    });

    it("6b. a checkpoint's signed text altered (another root, signature kept): bad-signature", async () => {
      const note = await checkpointNote(3);
      const root = note.split('\n')[2]!;
      const other = Buffer.from(root, 'base64');
      other[0] = other[0]! ^ 0x80;
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)}, ${q('root_hash')} = ${p(2)} WHERE ${q('tree_size')} = ${p(3)}`, [
        note.replace(root, other.toString('base64')),
        other.toString('hex'),
        3,
      ]);
      await expectProblems(['bad-signature seq=3 treeSize=3']);
    });

    it('6c. an anchored checkpoint whose signature was altered in the file: bad-signature', async () => {
      const text = readFileSync(anchorFile, 'utf8');
      const notes = await readCheckpointsFile(anchorFile);
      const seven = notes.find((note) => note.split('\n')[1] === '7')!;
      const line = seven.trimEnd().split('\n').at(-1)!;
      const signature = Buffer.from(line.slice(line.lastIndexOf(' ') + 1), 'base64');
      signature[30] = signature[30]! ^ 0x04;
      writeFileSync(anchorFile, text.replace(line, `${line.slice(0, line.lastIndexOf(' ') + 1)}${signature.toString('base64')}`));
      await expectProblems(['bad-signature seq=7 treeSize=7'], { anchored: true });
    });

    it('7. a middle checkpoint replaced by a validly signed one that does not extend its predecessor: inconsistent', async () => {
      const root = Buffer.alloc(32, 0x5a);
      const note = signNoteIndependently(checkpointBody(ORIGIN, 7, root), ORIGIN, privateKey);
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)}, ${q('root_hash')} = ${p(2)} WHERE ${q('tree_size')} = ${p(3)}`, [note, root.toString('hex'), 7]);
      await expectProblems(['inconsistent seq=7 treeSize=7']);
    });

    it('7b. the last checkpoint replaced by a validly signed one that does not extend its predecessor: inconsistent', async () => {
      const root = Buffer.alloc(32, 0x3c);
      const note = signNoteIndependently(checkpointBody(ORIGIN, 10, root), ORIGIN, privateKey);
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)}, ${q('root_hash')} = ${p(2)} WHERE ${q('tree_size')} = ${p(3)}`, [note, root.toString('hex'), 10]);
      await expectProblems(['inconsistent seq=10 treeSize=10']);
    });

    it('7c. a checkpoint signed with the key under another origin added: inconsistent', async () => {
      const good = await checkpointNote(7);
      const root = Buffer.from(good.split('\n')[2]!, 'base64');
      const note = signNoteIndependently(checkpointBody('intS.example.test/other', 7, root), ORIGIN, privateKey);
      const anchored = join(dir, `intS-other-${randomUUID()}.txt`);
      writeFileSync(anchored, `${readFileSync(anchorFile, 'utf8')}${note}\n`);
      const run = await cli('verify', ...url, '--public-key', VKEY, '--checkpoints', anchored);
      expect(run.code, run.stdout + run.stderr).toBe(1);
      expect(cliProblemBriefs(run.stdout)).toEqual(['inconsistent seq=7 treeSize=7']);
    });
  });

  it('8. with the triggers in place, UPDATE and DELETE of each audit table are refused, and nothing changes', async () => {
    const attempts: Array<[string, string, unknown[]]> = [
      ['audit_log update', `UPDATE ${log()} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['changed', 3]],
      ['audit_log delete', `DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [3]],
      ['audit_log delete all', `DELETE FROM ${log()}`, []],
      ['audit_log seq moved', `UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [42, 3]],
      ['audit_tree update', `UPDATE ${table(AuditTreeEntity)} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 0 AND ${q('idx')} = 2`, ['00'.repeat(32)]],
      ['audit_tree delete', `DELETE FROM ${table(AuditTreeEntity)} WHERE ${q('level')} = 0`, []],
      ['audit_checkpoint update', `UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, ['x', 7]],
      ['audit_checkpoint delete', `DELETE FROM ${table(AuditCheckpointEntity)} WHERE ${q('tree_size')} = ${p(1)}`, [10]],
    ];
    const accepted: string[] = [];
    for (const [name, text, params] of attempts) {
      try {
        await sql(text, params);
        accepted.push(name);
      } catch {
        // refused, as it should be
      }
    }
    expect(accepted).toEqual([]);
    await expectProblems([]);
  });
});
