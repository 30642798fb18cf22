import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  fileAnchor,
  InvalidAuditProofError,
  InvalidNoteKeyError,
  readCheckpointsFile,
  checkConsistency,
  checkInclusion,
  verifiersFor,
  verifyConsistency,
  verifyInclusion,
  type AuditConsistencyProof,
  type AuditInclusionProof,
} from '../../lib/index.js';
import { canonicalEventJson, canonicalJson } from '../../lib/integrity/canonical-json.js';
import { createSigner, formatCheckpoint, signNote, verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { parseCheckpointsFile } from '../../lib/integrity/file-anchor.js';
import { exportEventLine, parseExportLine } from '../../lib/integrity/jsonl-log-source.js';
import { consistencyProof, inclusionProof, leafHash, rootHash } from '../../lib/integrity/merkle.js';

const ORIGIN = 'audit.example.test/proofs';
const { privateKey } = generateKeyPairSync('ed25519');
const publicKey = createPublicKey(privateKey);
const signer = createSigner(ORIGIN, privateKey);
const other = generateKeyPairSync('ed25519').privateKey;

const events = Array.from({ length: 13 }, (_, i) => ({
  id: `0190a000-0000-7000-8000-${String(i + 1).padStart(12, '0')}`,
  occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
  action: 'order.paid',
  outcome: 'success' as const,
  kind: 'intent' as const,
  actorType: 'user',
  source: 'http',
  reason: `event ${i + 1}`,
  context: { z: 1, a: [i] },
}));
const leaves = events.map((e) => leafHash(Buffer.from(canonicalEventJson(e))));
const b64 = (hash: Buffer): string => hash.toString('base64');
const note = (size: number, sign = signer, origin = ORIGIN): string =>
  signNote(formatCheckpoint({ origin, treeSize: size, rootHash: rootHash(leaves.slice(0, size)) }), sign);

function proofOf(seq: number, size: number): AuditInclusionProof {
  return {
    id: events[seq - 1]!.id,
    seq,
    leafIndex: seq - 1,
    treeSize: size,
    leafHash: b64(leaves[seq - 1]!),
    path: inclusionProof(leaves.slice(0, size), seq - 1).map(b64),
    checkpoint: { treeSize: size, rootHash: b64(rootHash(leaves.slice(0, size))), note: note(size) },
  };
}

describe('verifyInclusion', () => {
  it('is true for a proof that holds, with its checkpoint as prove() gives it or as the note alone', () => {
    const proof = proofOf(5, 11);
    expect(verifyInclusion(proof, publicKey)).toBe(true);
    expect(verifyInclusion({ ...proof, checkpoint: proof.checkpoint.note }, publicKey)).toBe(true);
    expect(verifyInclusion(JSON.parse(JSON.stringify(proof)) as AuditInclusionProof, verifierKey(ORIGIN, publicKey), events[4])).toBe(true);
  });

  it('is false for a proof that does not hold, a malformed one included, and for an event that is not the one proved', () => {
    const proof = proofOf(5, 11);
    expect(verifyInclusion({ ...proof, path: [proof.path[1]!, proof.path[0]!, ...proof.path.slice(2)] }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, leafHash: b64(leaves[5]!) }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, checkpoint: { ...proof.checkpoint, treeSize: 12 } }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, checkpoint: { ...proof.checkpoint, rootHash: b64(leaves[0]!) } }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, checkpoint: proof.checkpoint.note.replace('\n11\n', '\n12\n') }, publicKey)).toBe(false);
    expect(verifyInclusion(proof, other)).toBe(false);
    expect(verifyInclusion(proof, publicKey, { ...events[4]!, reason: 'changed' })).toBe(false);
    expect(verifyInclusion({ ...proof, leafHash: 'not base64!' }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, path: ['AAAA'] }, publicKey)).toBe(false);
    expect(verifyInclusion({ ...proof, checkpoint: 42 as never }, publicKey)).toBe(false);
    expect(verifyInclusion(null as never, publicKey)).toBe(false);
  });

  it('throws for a key that is no key, and for an event as find() returns it', () => {
    const proof = proofOf(5, 11);
    expect(() => verifyInclusion(proof, 'not a key')).toThrow(/verifier key/);
    expect(() => verifyInclusion(proof, publicKey, { ...events[4]!, actor: { type: 'user' } } as never)).toThrow(/AuditEvent as find\(\) and history\(\) return it/);
  });
});

describe('verifyConsistency', () => {
  const proofBetween = (m: number, n: number): AuditConsistencyProof => ({ oldSize: m, newSize: n, path: consistencyProof(leaves.slice(0, n), m).map(b64) });

  it('is true for a proof that holds and false for one that does not, a malformed one included', () => {
    const proof = proofBetween(3, 7);
    expect(verifyConsistency(note(3), note(7), proof, publicKey)).toBe(true);
    expect(verifyConsistency(note(3), note(7), { ...proof, path: [...proof.path].reverse() }, publicKey)).toBe(false);
    expect(verifyConsistency(note(7), note(3), proof, publicKey)).toBe(false);
    expect(verifyConsistency(note(3), note(7), proof, other)).toBe(false);
    expect(verifyConsistency(note(3), note(7), { ...proof, path: [1] as never }, publicKey)).toBe(false);
    expect(verifyConsistency({ treeSize: 3 } as never, note(7), proof, publicKey)).toBe(false);
    expect(() => verifyConsistency(note(3), note(7), proof, 'not a key')).toThrow(/verifier key/);
  });
});

describe('checkInclusion', () => {
  it.each([
    [1, 1],
    [5, 8],
    [7, 7],
    [13, 13],
    [3, 11],
  ])('accepts the proof of seq %i in the tree of %i, with every form of public key', (seq, size) => {
    const proof = proofOf(seq, size);
    for (const key of [publicKey, privateKey, publicKey.export({ format: 'pem', type: 'spki' }).toString(), verifierKey(ORIGIN, publicKey)]) {
      expect(checkInclusion(proof, key)).toEqual({ ok: true });
    }
    expect(checkInclusion(proof, [other, publicKey])).toEqual({ ok: true });
    expect(checkInclusion(proof, publicKey, events[seq - 1])).toEqual({ ok: true });
    // An export line's object (with seq) is an event too.
    expect(checkInclusion(proof, publicKey, JSON.parse(exportEventLine({ ...events[seq - 1]!, seq })))).toEqual({ ok: true });
  });

  it('rejects a tampered path, leaf, seq, note or event, and another key', () => {
    const proof = proofOf(5, 11);
    const swapped = [proof.path[1]!, proof.path[0]!, ...proof.path.slice(2)];
    expect(checkInclusion({ ...proof, path: swapped }, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('audit path') });
    expect(checkInclusion({ ...proof, path: proof.path.slice(1) }, publicKey).ok).toBe(false);
    expect(checkInclusion({ ...proof, leafHash: b64(leaves[5]!) }, publicKey).ok).toBe(false);
    expect(checkInclusion({ ...proof, seq: 6, leafIndex: 5 }, publicKey).ok).toBe(false);
    expect(checkInclusion({ ...proof, leafIndex: 5 }, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('seq - 1') });
    expect(checkInclusion({ ...proof, treeSize: 12 }, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('tree size 11') });
    expect(checkInclusion({ ...proof, checkpoint: proof.checkpoint.note.replace('\n11\n', '\n12\n') }, publicKey)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('does not verify'),
    });
    expect(checkInclusion({ ...proof, checkpoint: note(11, createSigner(ORIGIN, other)) }, publicKey)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('unknown key'),
    });
    expect(checkInclusion(proof, other).ok).toBe(false);
    expect(checkInclusion(proof, publicKey, { ...events[4]!, reason: 'changed' })).toMatchObject({ ok: false, reason: expect.stringContaining('was changed') });
    expect(checkInclusion(proof, publicKey, events[3]).ok).toBe(false);
  });

  it('throws a clear error for a malformed proof', () => {
    const proof = proofOf(2, 4);
    expect(() => checkInclusion({ ...proof, leafHash: 'not base64!' }, publicKey)).toThrow(InvalidAuditProofError);
    expect(() => checkInclusion({ ...proof, path: ['AAAA'] }, publicKey)).toThrow(/path\[0\] is not the base64 of a 32-byte hash/);
    expect(() => checkInclusion({ ...proof, seq: -1 }, publicKey)).toThrow(/seq is not a non-negative integer/);
    expect(() => checkInclusion(null as never, publicKey)).toThrow(/the proof is not an object/);
  });
});

describe('checkConsistency', () => {
  const proofBetween = (m: number, n: number): AuditConsistencyProof => ({ oldSize: m, newSize: n, path: consistencyProof(leaves.slice(0, n), m).map(b64) });

  it.each([
    [1, 2],
    [3, 7],
    [4, 8],
    [6, 13],
    [13, 13],
  ])('accepts the proof from %i to %i', (m, n) => {
    expect(checkConsistency(note(m), note(n), proofBetween(m, n), publicKey)).toEqual({ ok: true });
    expect(checkConsistency(note(m), note(n), proofBetween(m, n), verifierKey(ORIGIN, publicKey))).toEqual({ ok: true });
  });

  it('rejects a tampered proof, swapped or forked checkpoints, another origin, another key', () => {
    const proof = proofBetween(3, 7);
    expect(checkConsistency(note(3), note(7), { ...proof, path: [...proof.path].reverse() }, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('prefix') });
    expect(checkConsistency(note(7), note(3), proof, publicKey).ok).toBe(false);
    expect(checkConsistency(note(3), note(8), proof, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('proof says 7') });
    const forked = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 7, rootHash: rootHash([...leaves.slice(0, 6), leaves[12]!]) }), signer);
    expect(checkConsistency(note(3), forked, proof, publicKey).ok).toBe(false);
    expect(checkConsistency(note(3), note(7, signer, 'elsewhere.test'), proof, publicKey)).toMatchObject({ ok: false, reason: expect.stringContaining('different logs') });
    expect(checkConsistency(note(3), note(7), proof, other).ok).toBe(false);
    expect(() => checkConsistency(note(3), note(7), { ...proof, path: [1] as never }, publicKey)).toThrow(InvalidAuditProofError);
  });
});

describe('verifiersFor', () => {
  it('names a PEM key after each key name of the note, and takes verifier keys as they are', () => {
    const twice = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 1, rootHash: leaves[0]! }), [signer, createSigner('second', privateKey)]);
    expect(verifiersFor(twice, publicKey).map((v) => v.name)).toEqual([ORIGIN, 'second']);
    expect(verifiersFor(twice, verifierKey('third', publicKey)).map((v) => v.name)).toEqual(['third']);
  });

  it('refuses a PEM whose line breaks are the two characters \\n, saying so', () => {
    const pem = (publicKey.export({ type: 'spki', format: 'pem' }) as string).replace(/\n/g, '\\n');
    expect(() => verifiersFor(note(3), pem)).toThrow(InvalidNoteKeyError);
    expect(() => verifiersFor(note(3), pem)).toThrow(/the public key is a PEM whose line breaks are the two characters \\n/);
  });
});

describe('checkpoints file and export lines', () => {
  it('fileAnchor appends notes that readCheckpointsFile reads back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-anchor-'));
    try {
      const file = join(dir, 'checkpoints');
      const anchor = fileAnchor(file);
      const notes = [note(3), note(7), note(13)];
      await Promise.all(notes.map((n, i) => anchor({ treeSize: [3, 7, 13][i]!, rootHash: '', note: n })));
      expect(readFileSync(file, 'utf8')).toBe(notes.map((n) => `${n}\n`).join(''));
      expect(await readCheckpointsFile(file)).toEqual(notes);
      // Extra blank lines and a note with two signatures.
      const two = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: 2, rootHash: rootHash(leaves.slice(0, 2)) }), [signer, createSigner('b', other)]);
      expect(parseCheckpointsFile(`\n${notes[0]}\n\n\n${two}\n${notes[1]}`)).toEqual([notes[0], two, notes[1]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an export line gives back the leaf hash of its event', () => {
    const line = exportEventLine({ ...events[2]!, seq: 3 });
    const read = parseExportLine(line, 'x.jsonl', 1);
    expect(read).toMatchObject({ seq: 3, id: events[2]!.id });
    expect(read.leafHash.equals(leaves[2]!)).toBe(true);
    // Canonical JSON: seq sorted among the members, no whitespace.
    expect(line).toContain('"route":null,"seq":3,"source":"http"');
    const { seq, ...content } = JSON.parse(line) as Record<string, unknown>;
    expect(seq).toBe(3);
    expect(canonicalJson(content)).toBe(canonicalEventJson(events[2]!));
    expect(() => exportEventLine({ ...events[2]!, seq: null })).toThrow(/no seq/);
    expect(() => parseExportLine('{"id":"a"}', 'x.jsonl', 4)).toThrow(/x\.jsonl, line 4: seq undefined is not a positive integer/);
  });
});
