import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditCheckpointEntity,
  AuditLogEntity,
  AuditTreeEntity,
  exportEventLine,
  InvalidAuditProofError,
  checkInclusion,
  verifyInclusion,
  type AuditCheckpoint,
} from '../../lib/index.js';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { createVerifier, openNote, parseCheckpoint } from '../../lib/integrity/checkpoint-note.js';
import { leafHash, rootHash, verifyConsistencyProof, verifyInclusionProof } from '../../lib/integrity/merkle.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.test/orders';

describe.each(databases())('integrity: sequencing, tree and checkpoints on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const anchored: AuditCheckpoint[] = [];

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: {
        integrity: {
          signingKey: privateKey,
          origin: ORIGIN,
          sequenceEvery: 50,
          checkpointEvery: { events: 7, ms: 3_600_000 },
          anchor: (checkpoint) => void anchored.push(checkpoint),
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const log = (n: number, from = 0) => Promise.all(Array.from({ length: n }, (_, i) => t.audit.log({ action: 'order.noted', reason: `note ${from + i}`, target: { type: 'order', id: String(from + i) } })));
  const sequenced = () => t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
  const leaves = () => t.dataSource.getRepository(AuditTreeEntity).find({ where: { level: 0 }, order: { index: 'ASC' } });
  const verifier = () => createVerifier(ORIGIN, publicKey);

  it('gives every stored event a gapless seq and its leaf within a short delay, without being asked', async () => {
    await log(10);
    await expect.poll(async () => (await sequenced()).filter((row) => row.seq !== null).length, { timeout: 5_000 }).toBe(10);
    const rows = await sequenced();
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    const stored = await leaves();
    expect(stored.map((leaf) => [leaf.index, leaf.eventId])).toEqual(rows.map((row) => [row.seq! - 1, row.id]));
    for (const [i, row] of rows.entries()) expect(stored[i]!.hash).toBe(leafHash(Buffer.from(canonicalEventJson(row))).toString('hex'));
    // Read back through AuditService too.
    const { items } = await t.audit.find({ limit: 10 });
    expect(items.every((event) => typeof event.seq === 'number')).toBe(true);
  });

  it('signs a checkpoint once checkpointEvery.events new events are in the tree, and hands it to anchor', async () => {
    await expect.poll(() => anchored.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    const stored = await t.dataSource.getRepository(AuditCheckpointEntity).find({ order: { treeSize: 'ASC' } });
    expect(stored.map((row) => row.treeSize)).toEqual(anchored.map((checkpoint) => checkpoint.treeSize));
    const first = stored[0]!;
    expect(first.treeSize).toBeGreaterThanOrEqual(7);
    const opened = openNote(first.note, [verifier()]);
    const note = parseCheckpoint(opened.text);
    expect(note.origin).toBe(ORIGIN);
    expect(Number(note.treeSize)).toBe(first.treeSize);
    const tree = (await leaves()).slice(0, first.treeSize).map((leaf) => Buffer.from(leaf.hash, 'hex'));
    expect(note.rootHash.equals(rootHash(tree))).toBe(true);
    expect(first.rootHash).toBe(rootHash(tree).toString('hex'));
  });

  it('checkpoint() sequences everything now and returns the signed checkpoint of the whole tree; twice gives the same', async () => {
    await log(13, 100);
    const checkpoint = await t.audit.checkpoint();
    const rows = await sequenced();
    expect(rows.every((row) => row.seq !== null)).toBe(true);
    expect(checkpoint.treeSize).toBe(rows.length);
    expect(rows.map((row) => row.seq)).toEqual(rows.map((_, i) => i + 1));
    const tree = (await leaves()).map((leaf) => Buffer.from(leaf.hash, 'hex'));
    expect(Buffer.from(checkpoint.rootHash, 'base64').equals(rootHash(tree))).toBe(true);
    expect(openNote(checkpoint.note, [verifier()]).verified).toHaveLength(1);
    expect(anchored.at(-1)).toEqual(checkpoint);
    expect(await t.audit.checkpoint()).toEqual(checkpoint);
  });

  it('prove(id): an inclusion proof that checks against the signed root, for every event', async () => {
    const rows = await sequenced();
    const checkpoint = await t.audit.checkpoint();
    for (const row of [rows[0]!, rows[6]!, rows[rows.length - 1]!]) {
      const proof = await t.audit.prove(row.id);
      expect(proof).toMatchObject({ id: row.id, seq: row.seq, leafIndex: row.seq! - 1, treeSize: checkpoint.treeSize });
      // The checkpoint as checkpoint() returns it.
      expect(proof.checkpoint).toEqual({ treeSize: checkpoint.treeSize, rootHash: checkpoint.rootHash, note: checkpoint.note });
      expect(proof.leafHash).toBe(leafHash(Buffer.from(canonicalEventJson(row))).toString('base64'));
      const root = parseCheckpoint(openNote(proof.checkpoint.note, [verifier()]).text).rootHash;
      const path = proof.path.map((hash) => Buffer.from(hash, 'base64'));
      expect(verifyInclusionProof(proof.leafIndex, proof.treeSize, Buffer.from(proof.leafHash, 'base64'), path, root)).toBe(true);
    }
    await expect(t.audit.prove('0190f0f0-0000-7000-8000-000000000000')).rejects.toThrow(/no event 0190f0f0-0000-7000-8000-000000000000 in audit_log/);
    await expect(t.audit.prove('nope')).rejects.toThrow(/needs an event id/);
  });

  it('verifyInclusion(proof, key, event): the row as stored proves the event; the event as find() returns it is refused, saying what to give', async () => {
    const [id] = await log(1, 400);
    const proof = await t.audit.prove(id!);
    const row = await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id: id! });
    expect(verifyInclusion(proof, publicKey)).toBe(true);
    expect(verifyInclusion(proof, publicKey, row)).toBe(true);
    expect(checkInclusion(proof, publicKey, row)).toEqual({ ok: true });
    expect(verifyInclusion(proof, publicKey, JSON.parse(exportEventLine(row)))).toBe(true);
    expect(verifyInclusion(proof, publicKey, { ...row, reason: 'rewritten' })).toBe(false);
    expect(checkInclusion(proof, publicKey, { ...row, reason: 'rewritten' })).toMatchObject({ ok: false, reason: expect.stringContaining('was changed') });
    // find()'s shape nests actor, request and target: hashing it would call an untouched event
    // "changed", so it is refused (and does not compile).
    const [event] = (await t.audit.find({ target: { type: 'order', id: '400' } })).items;
    expect(event?.id).toBe(id);
    // @ts-expect-error an AuditEvent is not a row of audit_log
    expect(() => verifyInclusion(proof, publicKey, event!)).toThrow(InvalidAuditProofError);
    // @ts-expect-error an AuditEvent is not a row of audit_log
    expect(() => verifyInclusion(proof, publicKey, event!)).toThrow(/as find\(\) and history\(\) return it.*AuditLogEntity/);
  });

  it('prove() of an event not yet sequenced sequences it first', async () => {
    const [id] = await log(1, 500);
    const proof = await t.audit.prove(id!);
    const row = await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id: id! });
    expect(proof.seq).toBe(row.seq);
    expect(proof.treeSize).toBeGreaterThanOrEqual(row.seq!);
  });

  it('proveConsistency(): the newer checkpoint extends the older one', async () => {
    const older = await t.audit.checkpoint();
    await log(9, 600);
    const newer = await t.audit.checkpoint();
    const proof = await t.audit.proveConsistency(older, newer.note);
    expect(proof).toMatchObject({ oldSize: older.treeSize, newSize: newer.treeSize });
    const path = proof.path.map((hash) => Buffer.from(hash, 'base64'));
    expect(verifyConsistencyProof(older.treeSize, newer.treeSize, Buffer.from(older.rootHash, 'base64'), Buffer.from(newer.rootHash, 'base64'), path)).toBe(true);
    await expect(t.audit.proveConsistency(newer, older)).rejects.toThrow(/is larger than the newer one/);
  });

  // (SQLite's test database lives in memory: a second app would have a database of its own.)
  it.skipIf(kind === 'sqlite')('two instances writing at once: one gapless sequence, each event once', async () => {
    const other = await createTestApp({
      db,
      adapter: 'fastify',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 20, checkpointEvery: { events: 5 } } },
    });
    try {
      const deadline = Date.now() + 1_500;
      let n = 0;
      while (Date.now() < deadline && n < 400) {
        await Promise.all([log(5, 1000 + n), other.audit.log({ action: 'order.noted', reason: `other ${n}` })]);
        n += 6;
      }
      await other.audit.checkpoint();
      const checkpoint = await t.audit.checkpoint();
      const rows = await sequenced();
      expect(rows.map((row) => row.seq)).toEqual(rows.map((_, i) => i + 1));
      expect(checkpoint.treeSize).toBe(rows.length);
      const tree = await leaves();
      expect(tree.map((leaf) => leaf.eventId)).toEqual(rows.map((row) => row.id));
      expect(Buffer.from(checkpoint.rootHash, 'base64').equals(rootHash(tree.map((leaf) => Buffer.from(leaf.hash, 'hex'))))).toBe(true);
      // Every checkpoint ever signed is consistent with the final tree.
      for (const row of await t.dataSource.getRepository(AuditCheckpointEntity).find()) {
        expect(row.rootHash).toBe(rootHash(tree.slice(0, row.treeSize).map((leaf) => Buffer.from(leaf.hash, 'hex'))).toString('hex'));
      }
    } finally {
      await other.close();
    }
  });
});
