// Integrity at its edges: a checkpoint of the empty log, consistency checked from the
// checkpoints checkpoint() returns, and a start-up error that names the option to change.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkConsistency, InvalidAuditOptionsError, verifyConsistency } from '../../lib/index.js';
import { resolveIntegrity } from '../../lib/integrity/integrity-options.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.test/edges';
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
/** SHA-256 of the empty string: the root of the tree of size 0 (RFC 9162, section 2.1.1). */
const EMPTY_ROOT = '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';

describe.each(databases())('integrity at its edges on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000 } } });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('checkpoint() of a log with no event signs the empty tree, which later checkpoints extend', async () => {
    const empty = await t.audit.checkpoint();
    expect(empty).toMatchObject({ treeSize: 0, rootHash: EMPTY_ROOT });
    expect(empty.note).toBe(`${ORIGIN}\n0\n${EMPTY_ROOT}\n\n${empty.note.split('\n\n')[1]}`);
    expect(await t.audit.checkpoint()).toEqual(empty);
    expect(await t.audit.verify()).toMatchObject({ ok: true, treeSize: 0, problems: [] });

    await Promise.all([1, 2, 3].map((i) => t.audit.log({ action: 'order.noted', reason: `note ${i}` })));
    const newer = await t.audit.checkpoint();
    expect(newer.treeSize).toBe(3);
    const proof = await t.audit.proveConsistency(empty, newer);
    expect(verifyConsistency(empty, newer, proof, publicKey)).toBe(true);
    expect(await t.audit.verify()).toMatchObject({ ok: true, treeSize: 3, problems: [] });
  });

  it('verifyConsistency() and checkConsistency() take the checkpoints checkpoint() returns, or their notes, and check that the two agree', async () => {
    await Promise.all([1, 2].map((i) => t.audit.log({ action: 'order.noted', reason: `note ${i}` })));
    const older = await t.audit.checkpoint();
    await Promise.all([3, 4, 5].map((i) => t.audit.log({ action: 'order.noted', reason: `note ${i}` })));
    const newer = await t.audit.checkpoint();
    const proof = await t.audit.proveConsistency(older, newer);
    expect(verifyConsistency(older, newer, proof, publicKey)).toBe(true);
    expect(verifyConsistency(older.note, newer, proof, publicKey)).toBe(true);
    expect(verifyConsistency(older, newer.note, proof, publicKey)).toBe(true);
    expect(checkConsistency(older, newer, proof, publicKey)).toEqual({ ok: true });
    // An object whose fields were changed: its signed note is what counts, and the two disagree.
    expect(verifyConsistency({ ...older, rootHash: newer.rootHash }, newer, proof, publicKey)).toBe(false);
    expect(checkConsistency({ ...older, rootHash: newer.rootHash }, newer, proof, publicKey)).toEqual({
      ok: false,
      reason: "the older checkpoint's rootHash is not the root hash of its signed note",
    });
    expect(checkConsistency(older, { ...newer, treeSize: 4 }, proof, publicKey)).toEqual({ ok: false, reason: 'the newer checkpoint says tree size 4, its signed note 5' });
    expect(verifyConsistency({ treeSize: 2 } as never, newer, proof, publicKey)).toBe(false);
    expect(() => checkConsistency({ treeSize: 2 } as never, newer, proof, publicKey)).toThrow(
      "the older checkpoint must be a signed note's text or a checkpoint { treeSize, rootHash, note }",
    );
  });
});

describe('integrity options name the option to change', () => {
  it('an origin with spaces, and no keyName: the error names integrity.origin and says to pass keyName', () => {
    expect(() => resolveIntegrity({ signingKey: privateKey, origin: 'Acme orders audit log' })).toThrow(InvalidAuditOptionsError);
    expect(() => resolveIntegrity({ signingKey: privateKey, origin: 'Acme orders audit log' })).toThrow(
      /"integrity\.origin".*names the signing key when keyName is not given.*pass keyName/,
    );
    expect(resolveIntegrity({ signingKey: privateKey, origin: 'Acme orders audit log', keyName: 'acme-orders' })?.origin).toBe('Acme orders audit log');
    expect(() => resolveIntegrity({ signingKey: privateKey, origin: ORIGIN, keyName: 'acme orders' })).toThrow(/"integrity\.keyName"/);
  });
});
