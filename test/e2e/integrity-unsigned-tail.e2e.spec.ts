// Rows of audit_tree past the last checkpoint altered or forged, the events untouched: an
// inner node over sequenced events overwritten, or a leaf (with the node over it) inserted
// far past the tree. The integrator takes the tree's size (MAX of the leaves' idx) and its
// right edge from the stored rows, so the next checkpoint must not sign a root built on
// them: a signed root that the events cannot reproduce can never be repaired (every later
// checkpoint is built on it), and verify() then blames the events.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { AuditCheckpointEntity } from '../../lib/storage/audit-checkpoint.entity.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/unsigned-tail';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('an inner node past the last checkpoint overwritten, then a checkpoint, on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-unsigned-tail-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } } });
    for (let i = 0; i < 8; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    await t.audit.checkpoint();
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const tree = () => t.dataSource.getMetadata('AuditTreeEntity').tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');

  it('the checkpoint does not sign a root over the altered node, and verify() goes on naming the node, not the events', async () => {
    for (let i = 8; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    expect(await t.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ sequenced: 2, treeSize: 10 });
    const events = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    // Level 1, index 4: the hash of the leaves of events 9 and 10, the right edge of the tree of 10.
    await t.dataSource.query(`UPDATE ${tree()} SET ${q('hash')} = ${p(1)} WHERE ${q('level')} = 1 AND ${q('idx')} = 4`, ['11'.repeat(32)]);
    const before = await t.audit.verify();
    expect(before.problems.map((x) => [x.kind, x.node])).toEqual([['modified', { level: 1, index: 4 }]]);

    const signed = await t.audit.checkpoint().then(
      (checkpoint) => `signed ${checkpoint.treeSize}`,
      (error: Error) => `refused: ${error.message}`,
    );
    const after = await t.audit.verify();
    const run = await cli('verify', ...url, '--public-key', VKEY);
    // The events are as they were written; only the tree row was altered.
    expect(await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).toEqual(events);
    expect.soft(after.problems.map((x) => ({ kind: x.kind, node: x.node, treeSize: x.treeSize })), `${signed}\n${run.stdout}`).toEqual([{ kind: 'modified', node: { level: 1, index: 4 }, treeSize: undefined }]);
    expect.soft(run.stdout).not.toMatch(/events 9 to 10 do not hash to the root signed/);
    // Refused, naming the row at fault and what to do.
    expect(signed).toMatch(/^refused: .*audit_tree node at level 1, index 4 \(over events 9 to 10\) is not the hash of the leaves below it.*A tree row past the last checkpoint altered or forged/);
    expect((await t.dataSource.getRepository(AuditCheckpointEntity).find()).map((c) => c.treeSize)).toEqual([8]);
  });

  it('a leaf row and the node over it forged past the tree: the next event still gets the next seq, and no event is reported removed', async () => {
    // A leaf at idx 11 (seq 12) that names no event, and the node over leaves 9 to 12 (the right edge of a tree of 12).
    await t.dataSource.query(`INSERT INTO ${tree()} (${q('level')}, ${q('idx')}, ${q('hash')}, ${q('event_id')}) VALUES (0, 11, ${p(1)}, NULL), (2, 2, ${p(2)}, NULL)`, ['22'.repeat(32), '33'.repeat(32)]);
    const before = await t.audit.verify();
    expect(before.ok).toBe(false);
    // No event was ever at seqs 9 to 12, and no checkpoint covers them: nothing was removed or truncated.
    expect.soft(before.problems.map((x) => x.kind), JSON.stringify(before.problems)).not.toContain('truncated');

    await t.audit.log({ action: 'order.noted', reason: 'note 9' });
    const signed = await t.audit.checkpoint().then(
      (checkpoint) => `signed ${checkpoint.treeSize}`,
      (error: Error) => `refused: ${error.message}`,
    );
    const ninth = await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ reason: 'note 9' });
    // Gapless: the ninth event is seq 9, or it waits unsequenced while the tree is looked at.
    expect.soft([null, 9], signed).toContain(ninth.seq);
    // Refused: the leaf past the last event is named, and nothing was sequenced or signed after 8.
    expect(signed).toMatch(/^refused: Audit integrity: audit_tree has a leaf at level 0, index 11 \(seq 12\), but no event has a seq past 8/);
    expect(ninth.seq).toBeNull();
    expect((await t.dataSource.getRepository(AuditCheckpointEntity).find()).map((c) => c.treeSize)).toEqual([8]);
    // verify() names the tree row, and reports no event missing or truncated.
    const after = await t.audit.verify();
    expect(after.problems.map((x) => ({ kind: x.kind, seq: x.seq, node: x.node }))).toEqual([{ kind: 'inserted', seq: undefined, node: { level: 0, index: 11 } }]);
  });

  it('an event past the last checkpoint changed, then another instance: nothing is signed over it, and the leaf is named', async () => {
    for (let i = 8; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    expect(await t.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ sequenced: 2, treeSize: 10 });
    await t.dataSource.getRepository(AuditLogEntity).update({ reason: 'note 10' }, { reason: 'note ten' });
    const other = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } } });
    try {
      await other.audit.log({ action: 'order.noted', reason: 'note 11' });
      await expect(other.audit.checkpoint()).rejects.toThrow(/leaf at level 0, index 9 \(seq 10\) is not the hash of the event with seq 10.*the event or its tree row was changed/);
      expect((await other.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ reason: 'note 11' })).seq).toBeNull();
      expect((await other.dataSource.getRepository(AuditCheckpointEntity).find()).map((c) => c.treeSize)).toEqual([8]);
      expect((await other.audit.verify()).problems.map((x) => [x.kind, x.seq])).toEqual([['modified', 10]]);
    } finally {
      await other.close();
    }
  });

  it('rows past the last checkpoint written by another instance are checked, and built on when they hold', async () => {
    for (let i = 8; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}` });
    expect(await t.app.get(AuditIntegrator).batch(0, false)).toMatchObject({ sequenced: 2, treeSize: 10 });
    // Another instance (no memory of the rows 9 and 10) takes over.
    const other = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } } });
    try {
      await other.audit.log({ action: 'order.noted', reason: 'note 11' });
      expect(await other.audit.checkpoint()).toMatchObject({ treeSize: 11 });
      const result = await other.audit.verify();
      expect(result.problems).toEqual([]);
      expect((await other.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).map((e) => e.seq)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    } finally {
      await other.close();
    }
  });
});
