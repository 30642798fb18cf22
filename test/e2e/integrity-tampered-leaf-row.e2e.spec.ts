// The hash of one stored leaf of audit_tree overwritten, audit_log left as it was signed:
// the event still hashes to what the signed checkpoints cover (its hash and its neighbours'
// reproduce the stored node above it and the signed root), so the row at fault is the
// tree's. verify() and prove() must name that row, as they do for an inner node or a
// leaf's event_id, and not report the untouched event as changed.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { nodeHash } from '../../lib/integrity/merkle.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/leaf-hash';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('a stored leaf hash overwritten, its event untouched, on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-leaf-hash-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } } });
    for (let i = 0; i < 8; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    await t.audit.checkpoint();
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const tree = () => t.dataSource.getMetadata('AuditTreeEntity').tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');

  it('verify() names the leaf row (level 0, index 4) and prove() of event 5 names audit_tree, not the event, as altered', async () => {
    await t.dataSource.query(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 0 AND ${q('idx')} = 4`, ['11'.repeat(32)]);
    // audit_log is as signed: every event row reads as it was written.
    expect(await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).toEqual(rows);

    const result = await t.audit.verify();
    expect(result.ok).toBe(false);
    expect.soft(result.problems).toEqual([expect.objectContaining({ kind: 'modified', seq: 5, node: { level: 0, index: 4 } })]);
    expect.soft(result.problems[0]?.message).not.toMatch(/it was changed\)?$/);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.code).toBe(1);
    expect.soft(run.stdout).toMatch(/^modified .*level=0 index=4/m);

    const refused = await t.audit.prove(rows[4]!.id).then(() => 'proved', (error: Error) => error.message);
    expect.soft(refused).toMatch(/audit_tree/);
    expect.soft(refused).not.toMatch(/was changed after it was sequenced/);
  });

  /** The stored hash of a tree row. */
  async function stored(level: number, index: number): Promise<Buffer> {
    const [row] = (await t.dataSource.query(`SELECT ${q('hash')} AS h FROM ${tree()} WHERE ${q('level')} = ${p(1)} AND ${q('idx')} = ${p(2)}`, [level, index])) as Array<{ h: string }>;
    return Buffer.from(row!.h, 'hex');
  }
  const overwrite = (level: number, index: number, hash: Buffer) =>
    t.dataSource.query(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = ${p(2)} AND ${q('idx')} = ${p(3)}`, [hash.toString('hex'), level, index]);
  const refusal = (id: string) => t.audit.prove(id).then(() => 'proved', (error: Error) => error.message);

  it('a right-hand leaf (level 0, index 5) overwritten: its left sibling and the node above name the leaf row', async () => {
    await overwrite(0, 5, Buffer.alloc(32, 0x22));
    const result = await t.audit.verify();
    expect(result.problems).toEqual([
      { kind: 'modified', seq: 6, id: rows[5]!.id, node: { level: 0, index: 5 }, message: expect.stringMatching(/^the stored leaf of event 6 is not the event's hash, though the event's hash with its sibling's stored leaf is the stored node above them \(level 1, index 2\): the tree row was altered$/) },
    ]);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^modified seq=6 id=${rows[5]!.id} level=0 index=5 the stored leaf of event 6`, 'm'));
    expect(await refusal(rows[5]!.id)).toMatch(/its leaf in audit_tree \(level 0, index 5\) is not the event's hash, .*the tree row was altered$/);
    // The events around it are still proved: their paths go through the node above, not through the leaf.
    await expect(t.audit.prove(rows[0]!.id)).resolves.toMatchObject({ seq: 1 });
  });

  it('a leaf and the node above it both overwritten to agree: the event is reported changed, as the tree above tells nothing else', async () => {
    const forged = Buffer.alloc(32, 0x33);
    await overwrite(0, 4, forged);
    await overwrite(1, 2, nodeHash(forged, await stored(0, 5)));
    const result = await t.audit.verify();
    expect(result.problems).toEqual([{ kind: 'modified', seq: 5, id: rows[4]!.id, message: 'event 5 does not hash to its stored leaf (it was changed)' }]);
    expect(await refusal(rows[4]!.id)).toMatch(/does not match its leaf in audit_tree: it was changed after it was sequenced$/);
  });

  it('the last leaf of an odd-sized tree overwritten: it has no sibling, and the signed root it is promoted to names the leaf row', async () => {
    await t.audit.log({ action: 'order.noted', reason: 'note 9' });
    await t.audit.checkpoint();
    const ninth = (await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ seq: 9 })).id;
    await overwrite(0, 8, Buffer.alloc(32, 0x44));
    const result = await t.audit.verify();
    expect(result.problems).toEqual([
      { kind: 'modified', seq: 9, id: ninth, node: { level: 0, index: 8 }, message: expect.stringMatching(/^the stored leaf of event 9 is not the event's hash, though the event's hash, as the last leaf of the tree of 9, rebuilds the root signed in checkpoint 9: the tree row was altered$/) },
    ]);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.stdout).toMatch(new RegExp(`^modified seq=9 id=${ninth} level=0 index=8 `, 'm'));
    expect(await refusal(ninth)).toMatch(/its leaf in audit_tree \(level 0, index 8\) is not the event's hash, .*checkpoint 9: the tree row was altered$/);
  });

  it('a leaf past the last checkpoint overwritten: the node above names the leaf row, and that node is not reported', async () => {
    for (let i = 8; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    expect(await t.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ sequenced: 2, treeSize: 10 }); // sequenced, not signed
    const ninth = (await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ seq: 9 })).id;
    await overwrite(0, 8, Buffer.alloc(32, 0x66));
    const result = await t.audit.verify();
    expect(result.problems).toEqual([
      { kind: 'modified', seq: 9, id: ninth, node: { level: 0, index: 8 }, message: expect.stringMatching(/^the stored leaf of event 9 is not the event's hash, though the event's hash with its sibling's stored leaf is the stored node above them \(level 1, index 4\): the tree row was altered$/) },
    ]);
  });

  it('the last leaf of an odd-sized tree no checkpoint covers yet, overwritten: nothing above it tells, so the event is reported changed', async () => {
    await t.audit.log({ action: 'order.noted', reason: 'note 9' });
    expect(await t.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ sequenced: 1, treeSize: 9 }); // sequenced, not signed
    const ninth = (await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ seq: 9 })).id;
    await overwrite(0, 8, Buffer.alloc(32, 0x55));
    const result = await t.audit.verify();
    expect(result.problems).toEqual([{ kind: 'modified', seq: 9, id: ninth, message: 'event 9 does not hash to its stored leaf (it was changed)' }]);
  });
});
