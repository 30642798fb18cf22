// A proof whose checkpoint note carries a signature line with a key name no key may have:
// the boolean checks answer false (a malformed proof proves nothing), the others say why.
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConsistency, checkInclusion, verifyConsistency, verifyInclusion, type AuditCheckpoint, type AuditInclusionProof } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/chk-proof-names';
const { privateKey } = generateKeyPairSync('ed25519');
const publicKey = createPublicKey(privateKey);

/** The note with the key name of its signature line changed to `name`. */
const renamed = (note: string, name: string): string => note.replace(`\u2014 ${ORIGIN} `, `\u2014 ${name} `);

describe('proofs whose note names a key no key may have (sqlite)', () => {
  let db: TestDatabase;
  let t: TestApp;
  let proof: AuditInclusionProof;
  let older: AuditCheckpoint;
  let newer: AuditCheckpoint;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
    older = await t.audit.checkpoint();
    for (let i = 3; i < 6; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
    newer = await t.audit.checkpoint();
    proof = await t.audit.prove((await t.rows())[1]!.id);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the untouched proof holds', () => {
    expect(proof.checkpoint.note).toContain(`\u2014 ${ORIGIN} `);
    expect(verifyInclusion(proof, publicKey)).toBe(true);
  });

  it('verifyInclusion is false, not an error about the key, for a note signed under a name with a plus sign', () => {
    const bad = { ...proof, checkpoint: { ...proof.checkpoint, note: renamed(proof.checkpoint.note, 'a+b') } };
    expect(() => verifyInclusion(bad, publicKey)).not.toThrow();
    expect(verifyInclusion(bad, publicKey)).toBe(false);
  });

  it('checkInclusion says why, for the same proof', () => {
    const bad = { ...proof, checkpoint: renamed(proof.checkpoint.note, 'a+b') };
    expect(() => checkInclusion(bad, publicKey)).not.toThrow();
    expect(checkInclusion(bad, publicKey).ok).toBe(false);
  });

  it('verifyConsistency is false for a newer checkpoint signed under a name with a plus sign', async () => {
    const consistency = await t.audit.proveConsistency(older, newer);
    expect(verifyConsistency(older, newer, consistency, publicKey)).toBe(true);
    const bad = { ...newer, note: renamed(newer.note, 'a+b') };
    expect(() => verifyConsistency(older, bad, consistency, publicKey)).not.toThrow();
    expect(verifyConsistency(older, bad, consistency, publicKey)).toBe(false);
    expect(checkConsistency(older, bad, consistency, publicKey).ok).toBe(false);
  });
});
