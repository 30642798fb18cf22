// verify() and a stored checkpoint row whose tree_size column is not its signed note's size.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { appendOnlyStatements } from '../../lib/storage/append-only.js';
import { AuditCheckpointEntity } from '../../lib/storage/audit-checkpoint.entity.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createSigner, formatCheckpoint, signNote } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/chk-columns';
const { privateKey } = generateKeyPairSync('ed25519');

async function storeEvents(t: TestApp, count: number): Promise<void> {
  const base = Date.parse('2025-12-01T10:00:00.000Z');
  const rows = Array.from({ length: count }, (_, i) => ({
    id: randomUUID(), occurredAt: new Date(base + i), action: 'order.noted', outcome: 'success', kind: 'intent', actorType: 'user', actorId: '7', source: 'http', reason: `note ${i + 1}`, seq: null,
  }));
  await t.dataSource.getRepository(AuditLogEntity).insert(rows as never);
}

describe.each(databases())('checkpoint row columns on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const alter = async (set: string): Promise<void> => {
    const runner = t.dataSource.createQueryRunner();
    try {
      for (const sql of appendOnlyStatements(runner).drop) await runner.query(sql);
      const q = (name: string) => t.dataSource.driver.escape(name);
      await runner.query(`UPDATE ${escapedTable(t.dataSource, t.dataSource.getMetadata(AuditCheckpointEntity))} SET ${set} WHERE ${q('tree_size')} = 3`);
    } finally {
      await runner.release();
    }
  };

  it('reports a checkpoint row whose tree_size column was changed', async () => {
    await storeEvents(t, 3);
    await t.audit.checkpoint();
    await storeEvents(t, 2);
    await t.audit.checkpoint();
    expect((await t.audit.verify()).ok).toBe(true);
    const q = (name: string) => t.dataSource.driver.escape(name);
    await alter(`${q('tree_size')} = 4`);
    const result = await t.audit.verify();
    expect(result.ok, JSON.stringify(result)).toBe(false);
  });

  it('a checkpoint whose note alone was replaced (its columns kept) is one problem, inconsistent; its root_hash column alone changed is modified', async () => {
    await storeEvents(t, 3);
    await t.audit.checkpoint();
    await storeEvents(t, 2);
    await t.audit.checkpoint();
    const q = (name: string) => t.dataSource.driver.escape(name);
    const forged = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 3, rootHash: Buffer.alloc(32, 7) }), createSigner(ORIGIN, privateKey));
    await alter(`${q('note')} = '${forged}'`);
    const result = await t.audit.verify();
    expect(result.problems.map((p) => `${p.kind} ${p.seq ?? ''}/${p.treeSize ?? ''}`)).toEqual(['inconsistent 3/3']);
  });

  it('a checkpoint whose root_hash column alone was changed is modified at its tree size, and proofs still check', async () => {
    await storeEvents(t, 3);
    const first = await t.audit.checkpoint();
    const q = (name: string) => t.dataSource.driver.escape(name);
    await alter(`${q('root_hash')} = '${'ab'.repeat(32)}'`);
    const result = await t.audit.verify();
    expect(result.problems.map((p) => `${p.kind} ${p.treeSize ?? ''}`)).toEqual(['modified 3']);
    const [row] = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' }, take: 1 });
    const proof = await t.audit.prove(row!.id);
    expect(proof.checkpoint.rootHash).toBe(first.rootHash);
  });
});
