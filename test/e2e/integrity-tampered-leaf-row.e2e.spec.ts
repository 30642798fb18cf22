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
});
