// Acceptance scenarios of tamper evidence beyond the plain cases: changes an
// administrator makes to values the database compares loosely (case, trailing spaces,
// times), the stored tree rewritten to match a changed event, checkpoint rows altered
// outside their signed note, and what the append-only guard lets through.
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditCheckpointEntity,
  AuditLogEntity,
  AuditTreeEntity,
  checkInclusion,
  exportEventLine,
  fileAnchor,
  readCheckpointsFile,
  verifyInclusion,
  type AuditIntegrityProblem,
} from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliProblemBriefs, cliProcess, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { independentVerifierKey, scenarioDatabase } from '../support/integrity-scenario.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'intS.example.test/deeper';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);
const EVENTS = 10;
const CHECKPOINTS = [3, 7, 10];

/** The canonical JSON of an event (its export line less `seq`), as the leaf was hashed from. */
function canonical(row: AuditLogEntity): string {
  const line = JSON.parse(exportEventLine(row)) as Record<string, unknown>;
  delete line['seq'];
  const sort = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(sort)
      : value !== null && typeof value === 'object'
        ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, sort((value as Record<string, unknown>)[key])]))
        : value;
  return JSON.stringify(sort(line));
}
const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();

describe.each(databases())('scenario: deeper tampering on %s', (kind) => {
  let dir: string;
  let db: TestDatabase;
  let url: string[];
  let t: TestApp;
  let anchorFile: string;
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-deeper-'));
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

  async function both(checkpoints = false): Promise<{ api: string[]; cli: string[]; code: number | null; problems: AuditIntegrityProblem[] }> {
    const anchored = checkpoints ? await readCheckpointsFile(anchorFile) : undefined;
    const result = await t.audit.verify(anchored ? { checkpoints: anchored } : {});
    // The command line's main(), in this process (the prove tests below run it as `npx` does).
    const run = await cli('verify', ...url, '--public-key', VKEY, ...(checkpoints ? ['--checkpoints', anchorFile] : []));
    return { api: problemBriefs(result.problems), cli: cliProblemBriefs(run.stdout), code: run.code, problems: result.problems };
  }

  describe('with the triggers dropped', () => {
    beforeEach(async () => {
      await dropAppendOnlyGuards(t.dataSource);
    });

    it.each([
      ['reason', 'INVOICE 5'],
      ['reason', 'invoice 5 '],
      ['target_type', 'Invoice'],
      ['actor_type', 'USER'],
      ['context', '{"amount":"50"}'],
      ['actor_display', ''],
    ])('a %s changed to %j (equal to the database’s collation or not) is modified at seq 5', async (column, value) => {
      await sql(`UPDATE ${log()} SET ${q(column)} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [value, 5]);
      const found = await both();
      expect(found.api).toEqual(['modified seq=5']);
      expect(found.cli).toEqual(['modified seq=5']);
      expect(found.problems[0]!.id).toBe(idOf(5));
    });

    it('the id of an event rewritten in upper case is a change of that event', async () => {
      if (kind === 'postgres') return; // a uuid column keeps one form
      await sql(`UPDATE ${log()} SET ${q('id')} = UPPER(${q('id')}) WHERE ${q('seq')} = ${p(1)}`, [5]);
      const [stored] = (await sql(`SELECT ${q('id')} AS id FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [5])) as Array<{ id: string }>;
      const found = await both();
      if (stored!.id === stored!.id.toLowerCase()) {
        // The column keeps one form (MariaDB's uuid type): nothing changed.
        expect(found.api).toEqual([]);
        return;
      }
      expect(found.api.length).toBeGreaterThan(0);
      expect(found.api.every((brief) => brief.endsWith('seq=5'))).toBe(true);
      expect(found.cli).toEqual(found.api);
      expect(found.code).toBe(1);
    });

    it('an event whose time was moved by one second is modified at its seq', async () => {
      const shift =
        kind === 'postgres'
          ? `${q('occurred_at')} + interval '1 second'`
          : kind === 'mariadb'
            ? `${q('occurred_at')} + INTERVAL 1 SECOND`
            : `strftime('%Y-%m-%d %H:%M:%f', ${q('occurred_at')}, '+1 second')`;
      await sql(`UPDATE ${log()} SET ${q('occurred_at')} = ${shift} WHERE ${q('seq')} = ${p(1)}`, [4]);
      const found = await both();
      expect(found.api).toEqual(['modified seq=4']);
      expect(found.cli).toEqual(['modified seq=4']);
    });

    it('a row deleted with its leaf: missing at its seq', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} = ${p(1)}`, [5]);
      await sql(`DELETE FROM ${table(AuditTreeEntity)} WHERE ${q('level')} = 0 AND ${q('idx')} = ${p(1)}`, [4]);
      const found = await both();
      expect(found.api).toContain('missing seq=5');
      expect(found.cli).toEqual(found.api);
      expect(found.code).toBe(1);
    });

    it('the last event moved past a gap: reported at its new seq with its id', async () => {
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [12, 10]);
      const found = await both();
      expect(found.code).toBe(1);
      expect(found.cli).toEqual(found.api);
      expect(found.problems.some((problem) => problem.seq === 12 && problem.id === idOf(10))).toBe(true);
    });

    it('the last rows removed with their leaves, the checkpoint kept: one truncated, from the first seq missing, with the checkpoint’s size', async () => {
      await sql(`DELETE FROM ${log()} WHERE ${q('seq')} > ${p(1)}`, [8]);
      await sql(`DELETE FROM ${table(AuditTreeEntity)} WHERE (${q('level')} = 0 AND ${q('idx')} >= 8) OR (${q('level')} = 1 AND ${q('idx')} >= 4) OR ${q('level')} >= 4`);
      const found = await both();
      expect(found.api).toEqual(['truncated seq=9 treeSize=10']);
      expect(found.cli).toEqual(found.api);
    });

    it('every table emptied: the anchored checkpoints reveal it, from seq 1', async () => {
      await sql(`DELETE FROM ${log()}`);
      await sql(`DELETE FROM ${table(AuditTreeEntity)}`);
      await sql(`DELETE FROM ${table(AuditCheckpointEntity)}`);
      const found = await both(true);
      // Each anchored checkpoint covers more than is left.
      expect(found.api).toEqual(['truncated seq=1 treeSize=3', 'truncated seq=1 treeSize=7', 'truncated seq=1 treeSize=10']);
      expect(found.cli).toEqual(found.api);
    });

    it('prove() after tampering: a changed or moved event gets no proof, and an old proof fails against the database', async () => {
      const before = await t.audit.prove(idOf(3));
      const file = join(dir, `intS-${randomUUID()}.json`);
      writeFileSync(file, JSON.stringify(before));
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [-1, 3]);
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [3, 4]);
      await sql(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [4, -1]);
      await expect(t.audit.prove(idOf(3))).rejects.toThrow();
      await expect(t.audit.prove(idOf(4))).rejects.toThrow();
      const run = await cliProcess('verify-proof', file, '--public-key', VKEY, ...url);
      expect(run.code, run.stdout + run.stderr).toBe(1);
      await sql(`UPDATE ${log()} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['changed', 6]);
      await expect(t.audit.prove(idOf(6))).rejects.toThrow();
      expect(verifyInclusion(await t.audit.prove(idOf(7)), VKEY)).toBe(true);
    });

    /** Rewrites event 9 and, to match, its leaf (index 8) and the level-1 node over leaves 8 and 9. */
    async function rewriteNineWithItsTree(): Promise<void> {
      await sql(`UPDATE ${log()} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['invoice 9 (waived)', 9]);
      const nine = await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ seq: 9 });
      const leaf = sha(Buffer.from([0]), Buffer.from(canonical(nine)));
      const [ten] = (await sql(`SELECT ${q('hash')} AS h FROM ${table(AuditTreeEntity)} WHERE ${q('level')} = 0 AND ${q('idx')} = 9`)) as Array<{ h: string }>;
      const node = sha(Buffer.from([1]), leaf, Buffer.from(ten!.h, 'hex'));
      await sql(`UPDATE ${table(AuditTreeEntity)} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 0 AND ${q('idx')} = 8`, [leaf.toString('hex')]);
      await sql(`UPDATE ${table(AuditTreeEntity)} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 1 AND ${q('idx')} = 4`, [node.toString('hex')]);
    }

    it('an event rewritten with its tree rows: the checkpoint over it no longer matches, and no new checkpoint is signed', async () => {
      await rewriteNineWithItsTree();
      const found = await both();
      expect(found.code).toBe(1);
      expect(found.cli).toEqual(found.api);
      // The rows agree with each other: the stored data cannot tell this from a checkpoint
      // that does not extend its predecessor, which is how it is reported (the message says both).
      expect(found.api).toEqual(['inconsistent seq=10 treeSize=10']);
      await t.audit.log({ action: 'invoice.issued', reason: 'invoice 11' });
      await expect(t.audit.checkpoint()).rejects.toThrow();
      const sizes = (await t.dataSource.getRepository(AuditCheckpointEntity).find()).map((c) => c.treeSize).sort((a, b) => a - b);
      expect(sizes).toEqual([3, 7, 10]);
    });

    it('an event rewritten with its tree rows and its checkpoint removed: the anchored checkpoint still reveals it after the app signs again', async () => {
      await rewriteNineWithItsTree();
      await sql(`DELETE FROM ${table(AuditCheckpointEntity)} WHERE ${q('tree_size')} = ${p(1)}`, [10]);
      await t.audit.log({ action: 'invoice.issued', reason: 'invoice 11' });
      const signed = await t.audit.checkpoint();
      expect(signed.treeSize).toBe(11);
      const found = await both(true);
      expect(found.code).toBe(1);
      expect(found.cli).toEqual(found.api);
      expect(found.api.length).toBeGreaterThan(0);
    });

    it('the root_hash column of the last checkpoint altered (its note intact): prove() still hands out proofs that check', async () => {
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('root_hash')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, ['ab'.repeat(32), 10]);
      const proof = await t.audit.prove(idOf(4));
      expect(checkInclusion(proof, VKEY), JSON.stringify(proof.checkpoint)).toEqual({ ok: true });
      expect(verifyInclusion(proof, VKEY)).toBe(true);
    });

    it('the root_hash column of the last checkpoint altered (its note intact): the CLI prove prints a proof that checks, or none', async () => {
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('root_hash')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, ['ab'.repeat(32), 10]);
      const printed = await cliProcess('prove', idOf(4), ...url);
      if (printed.code === 0) expect(checkInclusion(JSON.parse(printed.stdout) as Parameters<typeof checkInclusion>[0], VKEY)).toEqual({ ok: true });
      else expect(printed.code).toBe(1);
    });

    it('the root_hash column of the last checkpoint altered (its note intact): checkpoint() returns the signed note’s root', async () => {
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('root_hash')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, ['ab'.repeat(32), 10]);
      const checkpoint = await t.audit.checkpoint();
      expect(checkpoint.treeSize).toBe(10);
      expect(checkpoint.rootHash).toBe(checkpoint.note.split('\n')[2]);
    });

    it('the root_hash column of the last checkpoint altered (its note intact): what stops signing is named by verify()', async () => {
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('root_hash')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, ['ab'.repeat(32), 10]);
      await t.audit.log({ action: 'invoice.issued', reason: 'invoice 11' });
      let refused: unknown;
      await t.audit.checkpoint().catch((error: unknown) => (refused = error));
      if (refused !== undefined) {
        // The integrator signs nothing more: verify() must give the administrator something to look at.
        const found = await both();
        expect(found.api.length, `checkpoint() refused with: ${String(refused)}`).toBeGreaterThan(0);
        expect(found.cli).toEqual(found.api);
      }
    });

    it('the tree_size column of a checkpoint altered (its note intact): verify does not report the log clean', async () => {
      await sql(`UPDATE ${table(AuditCheckpointEntity)} SET ${q('tree_size')} = ${p(1)} WHERE ${q('tree_size')} = ${p(2)}`, [6, 7]);
      const found = await both();
      // The signed note still says 7 and matches the tree: either nothing is wrong, or the row is named; both agree.
      expect(found.cli).toEqual(found.api);
      const proof = await t.audit.prove(idOf(2));
      expect(verifyInclusion(proof, VKEY)).toBe(true);
    });
  });

  describe('with the append-only triggers in place', () => {
    it('an event not sequenced yet cannot be changed or deleted either', async () => {
      const id = await t.audit.log({ action: 'invoice.issued', reason: 'pending' });
      const refused: string[] = [];
      const attempts: Array<[string, string, unknown[]]> = [
        ['update reason', `UPDATE ${log()} SET ${q('reason')} = ${p(1)} WHERE ${q('id')} = ${p(2)}`, ['rewritten', id]],
        ['update reason and seq', `UPDATE ${log()} SET ${q('reason')} = ${p(1)}, ${q('seq')} = ${p(2)} WHERE ${q('id')} = ${p(3)}`, ['rewritten', 11, id]],
        ['delete', `DELETE FROM ${log()} WHERE ${q('id')} = ${p(1)}`, [id]],
        ['seq cleared of a sequenced event', `UPDATE ${log()} SET ${q('seq')} = NULL WHERE ${q('seq')} = ${p(1)}`, [10]],
      ];
      for (const [name, text, params] of attempts) {
        try {
          await sql(text, params);
        } catch {
          refused.push(name);
        }
      }
      expect(refused).toEqual(attempts.map(([name]) => name));
      const row = await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id });
      expect(row.reason).toBe('pending');
      const signed = await t.audit.checkpoint();
      expect(signed.treeSize).toBe(11);
      const found = await both();
      expect(found.api).toEqual([]);
      expect(found.code).toBe(0);
    });

    it.each([
      ['a member given twice', '{"amount":999999,"amount":100}'],
      ['a number past range', '{"amount":1e400}'],
    ])('a row inserted without a seq whose context has %s: inserted without a seq, and the rest is still sequenced', async (_name, context) => {
      const columns = t.dataSource.getMetadata(AuditLogEntity).columns.map((column) => column.databaseName);
      const odd = randomUUID();
      const given: Record<string, unknown> = { id: odd, seq: null, context };
      const params: unknown[] = [];
      const select = columns.map((c) => (c in given ? (params.push(given[c]), p(params.length)) : q(c))).join(', ');
      params.push(2);
      await sql(`INSERT INTO ${log()} (${columns.map(q).join(', ')}) SELECT ${select} FROM ${log()} WHERE ${q('seq')} = ${p(params.length)}`, params);
      await t.audit.log({ action: 'invoice.issued', reason: 'invoice 11' });
      const signed = await t.audit.checkpoint();
      expect(signed.treeSize).toBe(11);
      const found = await both();
      expect(found.api).toEqual(['inserted']);
      expect(found.cli).toEqual(['inserted']);
      expect(found.problems[0]!.id).toBe(odd);
    });

    it('a forged row inserted with a seq (INSERT is allowed): inserted at its seq, and signing stops', async () => {
      const columns = t.dataSource.getMetadata(AuditLogEntity).columns.map((column) => column.databaseName);
      const forged = randomUUID();
      const given: Record<string, unknown> = { id: forged, seq: 11, reason: 'forged' };
      const params: unknown[] = [];
      const select = columns.map((c) => (c in given ? (params.push(given[c]), p(params.length)) : q(c))).join(', ');
      params.push(2);
      await sql(`INSERT INTO ${log()} (${columns.map(q).join(', ')}) SELECT ${select} FROM ${log()} WHERE ${q('seq')} = ${p(params.length)}`, params);
      const found = await both();
      expect(found.api).toEqual(['inserted seq=11']);
      expect(found.cli).toEqual(['inserted seq=11']);
      expect(found.problems[0]!.id).toBe(forged);
      await t.audit.log({ action: 'invoice.issued', reason: 'after the forgery' });
      await expect(t.audit.checkpoint()).rejects.toThrow(/integrator did not give it/);
    });
  });
});
