// The rows of `audit_tree` themselves altered by hand (append-only guards dropped), with
// every event left as it was: verify() and `npx nestjs-system-audit verify` name the tree
// row, and prove() refuses to hand out a proof that would not check against its
// checkpoint.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, verifyInclusion } from '../../lib/index.js';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { leafHash } from '../../lib/integrity/merkle.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/tree-rows';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('audit_tree rows altered on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let rows: AuditLogEntity[];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-tree-rows-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } } });
    for (let i = 0; i < 8; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}`, context: { amount: 100, i } });
    await t.audit.checkpoint();
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await expectOk();
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });
  const q = (name: string) => t.dataSource.driver.escape(name);
  const tree = () => t.dataSource.getMetadata('AuditTreeEntity').tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t.dataSource.query(text, params);

  async function expectOk(): Promise<void> {
    const result = await t.audit.verify();
    expect(result.problems).toEqual([]);
    expect((await cli('verify', ...url, '--public-key', VKEY)).code).toBe(0);
  }

  /** What verify() and the CLI say after the tampering. */
  async function verdicts(): Promise<{ api: boolean; cli: number | null }> {
    const result = await t.audit.verify();
    const run = await cli('verify', ...url, '--public-key', VKEY);
    return { api: result.ok, cli: run.code };
  }

  it('an inner node overwritten: verify() reports it, and prove() of an untouched event under it refuses, naming the node', async () => {
    // Level 1, index 3: the hash of leaves 6 and 7 (events 7 and 8), inside the perfect subtree of size 8 whose root is signed.
    await sql(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 1 AND ${q('idx')} = 3`, ['00'.repeat(32)]);
    // The node is on the audit path of event 5: a proof read from the rows would not check.
    await expect(t.audit.prove(rows[4]!.id)).rejects.toThrow(/audit_tree node at level 1, index 3 \(over events 7 to 8\) is not the hash of its two children/);
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    const result = await t.audit.verify();
    expect(result.problems).toEqual([{ kind: 'modified', node: { level: 1, index: 3 }, message: expect.stringMatching(/^audit_tree node at level 1, index 3 \(over events 7 to 8\)/) }]);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.stdout).toMatch(/^modified level=1 index=3 audit_tree node at level 1, index 3/m);
    // Events whose path does not go through it are still proved.
    const proof = await t.audit.prove(rows[0]!.id);
    expect(verifyInclusion(proof, VKEY, rows[0]!)).toBe(true);
  });

  it('an inner node removed: verify() reports it missing, and prove() through it refuses', async () => {
    await sql(`DELETE FROM ${tree()} WHERE ${q('level')} = 2 AND ${q('idx')} = 0`);
    await expect(t.audit.prove(rows[6]!.id)).rejects.toThrow(/audit_tree has no node at level 2, index 0/);
    const result = await t.audit.verify();
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([{ kind: 'missing', node: { level: 2, index: 0 }, message: expect.stringMatching(/^audit_tree has no node at level 2, index 0 \(over events 1 to 4\)/) }]);
  });

  it('the event_id of a stored leaf overwritten: verify() reports it, and prove() of the untouched event refuses', async () => {
    await sql(`UPDATE ${tree()} SET ${q('event_id')} = ${p(1)} WHERE ${q('level')} = 0 AND ${q('idx')} = 2`, [randomUUID()]);
    const proved = await t.audit.prove(rows[2]!.id).then(() => 'proved', (error: Error) => error.message);
    expect(proved).toMatch(/belongs to event/); // the genuine event 3 can no longer be proved
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    const result = await t.audit.verify();
    expect(result.problems).toEqual([{ kind: 'modified', seq: 3, id: rows[2]!.id, node: { level: 0, index: 2 }, message: expect.stringMatching(/^the stored leaf of event 3 names event /) }]);
  });

  it('an event and its leaf rewritten together: the checkpoint over them is reported, not the inner nodes the rewrite left behind', async () => {
    const log = t.dataSource.getRepository(AuditLogEntity);
    await log.update({ id: rows[5]!.id }, { reason: 'rewritten' });
    const forged = (await log.findOneBy({ id: rows[5]!.id }))!;
    await sql(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 0 AND ${q('idx')} = 5`, [leafHash(Buffer.from(canonicalEventJson(forged))).toString('hex')]);
    const result = await t.audit.verify();
    expect(result.problems.map((x) => [x.kind, x.treeSize, x.node])).toEqual([['modified', 8, undefined]]);
    await expect(t.audit.prove(forged.id)).rejects.toThrow(/do not lead to the root signed in checkpoint 8|is not the hash of its two children/);
  });

  it('an inner node past the last checkpoint overwritten: reported before a checkpoint signs over it', async () => {
    for (let i = 8; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    const outcome = await t.app.get(AuditIntegrator).batch(0, false); // sequenced (9 and 10), no checkpoint due
    expect(outcome).toMatchObject({ sequenced: 2, treeSize: 10 });
    await sql(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 1 AND ${q('idx')} = 4`, ['11'.repeat(32)]);
    const result = await t.audit.verify();
    expect(result.problems.map((x) => [x.kind, x.node])).toEqual([['modified', { level: 1, index: 4 }]]);
  });
});
