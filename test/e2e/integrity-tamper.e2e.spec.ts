// What a database administrator can do with plain SQL, after dropping the append-only
// triggers, and what verify() and `npx nestjs-system-audit verify` report: the kind and
// the seq (or the checkpoint's tree size) of each problem. The log is written by the
// module itself (the integrator sequences it and signs the checkpoints).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditLogEntity, fileAnchor, readCheckpointsFile, type AuditIntegrityProblem } from '../../lib/index.js';
import { createSigner, formatCheckpoint, signNote, verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProblemBriefs, cliProcess, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/tamper';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);


const brief = (problems: ReadonlyArray<AuditIntegrityProblem>): string[] => problemBriefs(problems);
const briefCli = (stdout: string): string[] => cliProblemBriefs(stdout);

describe.each(databases())('tampering by a database administrator, found by verify on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let anchorFile: string;
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-tamper-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    anchorFile = join(dir, `anchor-${randomUUID()}.txt`);
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 }, anchor: fileAnchor(anchorFile) } },
    });
    // 12 events, checkpoints at 4, 8 and 12.
    for (let batch = 0; batch < 3; batch++) {
      for (let i = 0; i < 4; i++) await t.audit.log({ action: 'order.noted', reason: `note ${batch * 4 + i + 1}`, target: { type: 'order', id: String(batch * 4 + i + 1) } });
      await t.audit.checkpoint();
    }
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // The administrator drops the guards first.
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const table = (entity: typeof AuditLogEntity | typeof AuditCheckpointEntity) => {
    const metadata = t.dataSource.getMetadata(entity);
    return metadata.tablePath.split('.').map(q).join('.');
  };
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t.dataSource.query(text, params);

  /** verify() and the CLI (against the database, with the anchored checkpoints) agree on the problems. */
  async function expectProblems(expected: string[], extra: { checkpoints?: boolean } = {}): Promise<AuditIntegrityProblem[]> {
    const checkpoints = extra.checkpoints ? await readCheckpointsFile(anchorFile) : undefined;
    const result = await t.audit.verify(checkpoints ? { checkpoints } : {});
    expect(brief(result.problems)).toEqual(expected);
    expect(result.ok).toBe(expected.length === 0);
    const run = await cli('verify', ...url, '--public-key', VKEY, ...(extra.checkpoints ? ['--checkpoints', anchorFile] : []));
    expect(run.code, run.stderr).toBe(expected.length === 0 ? 0 : 1);
    expect(briefCli(run.stdout)).toEqual(expected);
    return result.problems;
  }

  it('untouched: ok, through the API and the CLI', async () => {
    await expectProblems([]);
  });

  it('a proof from prove() is checked by the CLI on another copy of the data, with the public key only', async () => {
    const proof = await t.audit.prove(rows[6]!.id);
    const proofFile = join(dir, `proof-${randomUUID()}.json`);
    writeFileSync(proofFile, JSON.stringify(proof));
    // The CLI's own proof, from the database, is the same.
    // As npx runs it once (the database does not change what the process does), in-process on the others.
    const printed = await (kind === 'sqlite' ? cliProcess : cli)('prove', rows[6]!.id, ...url);
    expect(printed.code, printed.stderr).toBe(0);
    expect(JSON.parse(printed.stdout)).toEqual(proof);
    // Another copy: an export, read with nothing but the verifier key.
    const copy = join(dir, `copy-${randomUUID()}.jsonl`);
    expect((await cli('export', ...url, '--out', copy)).code).toBe(0);
    const checked = await cli('verify-proof', proofFile, '--public-key', VKEY, '--events', copy);
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout).toMatch(new RegExp(`^OK: event ${proof.id} \\(seq 7\\) is in the signed tree of size 12`));
    // The same proof does not vouch for an altered copy.
    writeFileSync(copy, readFileSync(copy, 'utf8').replace('"reason":"note 7"', '"reason":"note 7, amended"'));
    const altered = await cli('verify-proof', proofFile, '--public-key', VKEY, '--events', copy);
    expect(altered.code).toBe(1);
    expect((await cli('prove', randomUUID(), ...url)).code).toBe(1);
  });

  it('a changed field of one row: modified, at its seq, with its id', async () => {
    await sql(`UPDATE ${table(AuditLogEntity)} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['nothing happened', 5]);
    const [problem] = await expectProblems(['modified seq=5']);
    expect(problem!.id).toBe(rows[4]!.id);
  });

  it('a JSON column set from SQL NULL to the JSON text null (what a reader parses alike, a change of the stored row all the same): modified', async () => {
    expect(rows[4]!.error).toBeNull();
    await sql(`UPDATE ${table(AuditLogEntity)} SET ${q('error')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['null', 5]);
    const [problem] = await expectProblems(['modified seq=5']);
    expect(problem!.id).toBe(rows[4]!.id);
  });

  it('a deleted row: missing, at its seq, with its id', async () => {
    await sql(`DELETE FROM ${table(AuditLogEntity)} WHERE ${q('seq')} = ${p(1)}`, [6]);
    const [problem] = await expectProblems(['missing seq=6']);
    expect(problem!.id).toBe(rows[5]!.id);
  });

  it('an inserted forged row: inserted, at the seq it was given', async () => {
    const forged = { ...rows[0]!, id: randomUUID(), reason: 'forged', seq: 13 };
    await t.dataSource.getRepository(AuditLogEntity).save(t.dataSource.getRepository(AuditLogEntity).create(forged));
    const [problem] = await expectProblems(['inserted seq=13']);
    expect(problem!.id).toBe(forged.id);
  });

  it('two rows whose contents were swapped: reordered, at both seqs', async () => {
    const log = table(AuditLogEntity);
    await sql(`UPDATE ${log} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [-3, 3]);
    await sql(`UPDATE ${log} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [3, 4]);
    await sql(`UPDATE ${log} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [4, -3]);
    await expectProblems(['reordered seq=3', 'reordered seq=4']);
  });

  it('the last rows removed: truncated, against the last checkpoint', async () => {
    await sql(`DELETE FROM ${table(AuditLogEntity)} WHERE ${q('seq')} > ${p(1)}`, [10]);
    await expectProblems(['truncated seq=11', 'truncated seq=12']);
  });

  it('the last rows removed with their tree and checkpoint: truncated, against the anchored checkpoints', async () => {
    await sql(`DELETE FROM ${table(AuditLogEntity)} WHERE ${q('seq')} > ${p(1)}`, [8]);
    const tree = t.dataSource.getMetadata('AuditTreeEntity').tablePath.split('.').map(q).join('.');
    // Every node that covers a leaf past 8: leaves 8.., level-1 nodes 4.., level-2 nodes 2.., level-3 nodes 1.. (node (3, 0) over
    // leaves 0 to 7 stays: the tree of 8 leaves has it, and verify() reports a node missing there).
    await sql(
      `DELETE FROM ${tree} WHERE (${q('level')} = 0 AND ${q('idx')} >= 8) OR (${q('level')} = 1 AND ${q('idx')} >= 4) OR (${q('level')} = 2 AND ${q('idx')} >= 2) OR (${q('level')} = 3 AND ${q('idx')} >= 1) OR ${q('level')} >= 4`,
    );
    await sql(`DELETE FROM ${table(AuditCheckpointEntity)} WHERE ${q('tree_size')} > ${p(1)}`, [8]);
    // Without the anchored copy the database is consistent with itself…
    expect((await t.audit.verify()).ok).toBe(true);
    // …with it, the removal shows.
    await expectProblems(['truncated seq=9 treeSize=12'], { checkpoints: true });
  });

  it("a checkpoint's signature altered: bad-signature, with its tree size", async () => {
    const [row] = await t.dataSource.getRepository(AuditCheckpointEntity).findBy({ treeSize: 8 });
    const lastLine = row!.note.trimEnd().split('\n').at(-1)!;
    const sig = lastLine.slice(lastLine.lastIndexOf(' ') + 1);
    const flipped = Buffer.from(sig, 'base64');
    flipped[10] = flipped[10]! ^ 0xff;
    await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, [row!.note.replace(sig, flipped.toString('base64')), 8]);
    await expectProblems(['bad-signature seq=8 treeSize=8']);
  });

  it('a checkpoint replaced by one that does not extend its predecessor (signed with the stolen key): inconsistent', async () => {
    const forgedRoot = Buffer.alloc(32, 7);
    const note = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 8, rootHash: forgedRoot }), createSigner(ORIGIN, privateKey));
    await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)}, ${q('root_hash')} = ${p(2)} WHERE ${q('tree_size')} = ${p(3)}`, [note, forgedRoot.toString('hex'), 8]);
    await expectProblems(['inconsistent seq=8 treeSize=8']);
  });

  it('the last checkpoint replaced by one the tree does not extend: the integrator signs nothing more', async () => {
    const forgedRoot = Buffer.alloc(32, 9);
    const note = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 12, rootHash: forgedRoot }), createSigner(ORIGIN, privateKey));
    await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('note')} = ${p(1)}, ${q('root_hash')} = ${p(2)} WHERE ${q('tree_size')} = ${p(3)}`, [note, forgedRoot.toString('hex'), 12]);
    await t.audit.log({ action: 'order.noted', reason: 'after the forgery' });
    await expect(t.audit.checkpoint()).rejects.toThrow(/does not extend the last checkpoint \(tree size 12\)/);
    const sizes = (await t.dataSource.getRepository(AuditCheckpointEntity).find()).map((row) => row.treeSize).sort((a, b) => a - b);
    expect(sizes).toEqual([4, 8, 12]);
    // The new event is sequenced all the same; verify names the checkpoint the tree does not
    // reach as inconsistent: the events, their leaves and the tree rows over them all agree.
    const result = await t.audit.verify();
    expect(brief(result.problems)).toEqual(['inconsistent seq=12 treeSize=12']);
  });

  it('key rotation: a new key signs from then on, old checkpoints stay verifiable with the old public key', async () => {
    await t.close();
    const { privateKey: newKey } = generateKeyPairSync('ed25519');
    const newVkey = verifierKey(ORIGIN, newKey);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: newKey, origin: ORIGIN, sequenceEvery: 60_000, verificationKeys: [VKEY] } } });
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `after rotation ${i}` });
    const checkpoint = await t.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(15);
    expect(checkpoint.note).toContain(`\u2014 ${ORIGIN} `);
    // Both keys: everything verifies.
    expect((await t.audit.verify()).ok).toBe(true);
    const both = await cli('verify', ...url, '--public-key', VKEY, '--public-key', newVkey);
    expect(both.code, both.stdout + both.stderr).toBe(0);
    // One key alone does not vouch for the other's checkpoints.
    expect(brief((await t.audit.verify({ publicKeys: [newVkey] })).problems)).toEqual(['bad-signature seq=4 treeSize=4', 'bad-signature seq=8 treeSize=8', 'bad-signature seq=12 treeSize=12']);
    expect(brief((await t.audit.verify({ publicKeys: [VKEY] })).problems)).toEqual(['bad-signature seq=15 treeSize=15']);
    // An instance that does not know the old key still signs over a tree that extends the old checkpoints.
    await t.close();
    const { privateKey: thirdKey } = generateKeyPairSync('ed25519');
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: thirdKey, origin: ORIGIN, sequenceEvery: 60_000 } } });
    await t.audit.log({ action: 'order.noted', reason: 'third key' });
    await expect(t.audit.checkpoint()).resolves.toMatchObject({ treeSize: 16 });
  });

  it('the anchor file holds every checkpoint the integrator signed', async () => {
    const anchored = await readCheckpointsFile(anchorFile);
    const stored = await t.dataSource.getRepository(AuditCheckpointEntity).find({ order: { treeSize: 'ASC' } });
    expect(anchored).toEqual(stored.map((row) => row.note));
    expect(readFileSync(anchorFile, 'utf8')).toContain(`${ORIGIN}\n12\n`);
  });
});
