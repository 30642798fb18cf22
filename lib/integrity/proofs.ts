import { KeyObject } from 'node:crypto';
import { InvalidAuditProofError } from '../exceptions/invalid-audit-proof.error.js';
import { InvalidNoteKeyError } from '../exceptions/invalid-note-key.error.js';
import type { AuditCheckpoint, AuditConsistencyProof, AuditInclusionProof, AuditProofResult, AuditPublicKey } from '../interfaces/audit-integrity.interface.js';
import { canonicalEventJson, type CanonicalEventInput } from './canonical-json.js';
import { createVerifier, isValidKeyName, openNote, parseCheckpoint, parseVerifierKey, toPublicKey, type Checkpoint, type NoteVerifier } from './checkpoint-note.js';
import { leafHashOfText, verifyConsistencyProof, verifyInclusionProof } from './merkle.js';

/** An inclusion proof whose checkpoint is given as its signed note's text alone. */
export type AuditInclusionProofWithNote = Omit<AuditInclusionProof, 'checkpoint'> & { checkpoint: string };

/*
 * Offline checks of the proofs the module hands out: whoever holds a proof and the log's
 * public key checks it without the database.
 */

/**
 * The verifiers that may open `note`, from public keys given in any form of
 * {@link AuditPublicKey}:
 *
 * - a verifier key string (`<name>+<key id>+<base64 key>`) is used as it is;
 * - a PEM key or `KeyObject` carries no key name, so it gets a verifier under each key
 *   name of the note's signature lines (a signature by another key under that name still
 *   does not verify: the key id covers the key);
 * - a private key stands for its public half.
 *
 * @throws InvalidNoteKeyError for a key that is not an Ed25519 key or a valid verifier key string.
 */
export function verifiersFor(note: string, keys: AuditPublicKey | readonly AuditPublicKey[]): NoteVerifier[] {
  const list: readonly AuditPublicKey[] = Array.isArray(keys) ? keys : [keys as AuditPublicKey];
  const names = signatureKeyNames(note);
  const verifiers: NoteVerifier[] = [];
  for (const key of list) {
    if (typeof key === 'string' && !key.trimStart().startsWith('-----BEGIN')) {
      verifiers.push(parseVerifierKey(key.trim()));
      continue;
    }
    if (!(key instanceof KeyObject) && typeof key !== 'string') {
      throw new InvalidNoteKeyError(`expected a KeyObject, PEM text or verifier key string, got ${typeof key}`);
    }
    // Checked even when the note names no key: a key that is not Ed25519 is the caller's error, whatever the note.
    if (names.length === 0) toPublicKey(key);
    for (const name of names) verifiers.push(createVerifier(name, key));
  }
  return dedupe(verifiers);
}

/**
 * Whether an inclusion proof holds, checked offline: `true` when {@link checkInclusion}
 * finds it holds, `false` when it does not — including a malformed proof (a missing
 * member, a hash that is not the base64 of 32 bytes): a proof handed over from elsewhere
 * that cannot be read does not prove anything. `checkInclusion` says why.
 *
 * @throws InvalidNoteKeyError for an unusable key; InvalidAuditProofError when `event` is
 *   an `AuditEvent` as `find()` returns it (give the stored row).
 */
export function verifyInclusion(
  proof: AuditInclusionProof | AuditInclusionProofWithNote,
  publicKey: AuditPublicKey | readonly AuditPublicKey[],
  event?: CanonicalEventInput & { actor?: never; request?: never; target?: never },
): boolean {
  if (event !== undefined) checkEventRow(event);
  return holds(() => checkInclusion(proof, publicKey, event));
}

/**
 * Whether a consistency proof holds, checked offline: `true` when {@link checkConsistency}
 * finds it holds, `false` when it does not, including a malformed proof or checkpoint.
 *
 * @throws InvalidNoteKeyError for an unusable key.
 */
export function verifyConsistency(
  older: string | AuditCheckpoint,
  newer: string | AuditCheckpoint,
  proof: AuditConsistencyProof,
  publicKey: AuditPublicKey | readonly AuditPublicKey[],
): boolean {
  return holds(() => checkConsistency(older, newer, proof, publicKey));
}

/** A check's answer as a boolean, a malformed proof being one that does not hold. */
function holds(check: () => AuditProofResult): boolean {
  try {
    return check().ok;
  } catch (err) {
    if (err instanceof InvalidAuditProofError) return false;
    throw err;
  }
}

/**
 * Checks an inclusion proof offline and says why it does not hold: the checkpoint (the
 * signed note's text, or an `AuditCheckpoint` whose `note` is checked) is signed by one of the keys,
 * its tree size is the proof's, the leaf index is `seq - 1`, and the audit path leads
 * from the leaf hash to the signed root. Given `event` (an `audit_log` row, or an object
 * of a JSON Lines export), also checks that the event is the proof's: same id, and its
 * canonical JSON hashes to the proof's leaf hash. The event as `find()` and `history()`
 * return it (an `AuditEvent`, with `actor`, `request` and `target` nested) is not that row,
 * and is refused.
 *
 * @returns `{ ok: true }`, or `{ ok: false, reason }` naming the first check that failed.
 * @throws InvalidAuditProofError when the proof is malformed (a missing member, a hash
 *   that is not the base64 of 32 bytes) or the event is an `AuditEvent`; InvalidNoteKeyError
 *   for an unusable key.
 */
export function checkInclusion(
  proof: AuditInclusionProof | AuditInclusionProofWithNote,
  publicKey: AuditPublicKey | readonly AuditPublicKey[],
  event?: CanonicalEventInput & { actor?: never; request?: never; target?: never },
): AuditProofResult {
  checkObject(proof, 'the proof');
  if (event !== undefined) checkEventRow(event);
  const seq = checkSize(proof.seq, 'seq');
  const leafIndex = checkSize(proof.leafIndex, 'leafIndex');
  const treeSize = checkSize(proof.treeSize, 'treeSize');
  if (typeof proof.id !== 'string' || proof.id === '') throw new InvalidAuditProofError('id is not a non-empty string');
  const leaf = checkHash(proof.leafHash, 'leafHash');
  const path = checkPath(proof.path);
  const note = noteOf(proof.checkpoint, 'checkpoint');

  const opened = openCheckpoint(note, publicKey, 'the checkpoint');
  if (!opened.ok) return opened;
  const checkpoint = opened.checkpoint;
  const disagreement = disagreesWithNote(proof.checkpoint, checkpoint, 'the checkpoint');
  if (disagreement) return fail(disagreement);
  if (checkpoint.treeSize !== BigInt(treeSize)) {
    return fail(`the checkpoint is of tree size ${checkpoint.treeSize}, the proof says ${treeSize}`);
  }
  if (leafIndex !== seq - 1) return fail(`leafIndex ${leafIndex} is not seq - 1 (seq ${seq})`);
  if (leafIndex >= treeSize) return fail(`seq ${seq} is beyond the checkpoint's tree size ${treeSize}`);
  if (!verifyInclusionProof(leafIndex, treeSize, leaf, path, checkpoint.rootHash)) {
    return fail(`the audit path does not lead from the leaf hash to the signed root of tree size ${treeSize}`);
  }
  if (event !== undefined) {
    checkObject(event, 'the event');
    if (event.id !== proof.id) return fail(`the event given is ${JSON.stringify(event.id)}, the proof is for ${JSON.stringify(proof.id)}`);
    const { seq: _seq, ...content } = event as CanonicalEventInput & { seq?: unknown };
    void _seq;
    let hash: Buffer;
    try {
      hash = leafHashOfText(canonicalEventJson(content as CanonicalEventInput));
    } catch (err) {
      return fail(`the event cannot be hashed: ${(err as Error).message}`);
    }
    if (!hash.equals(leaf)) return fail(`the event's content does not hash to the proof's leaf hash (the event was changed)`);
  }
  return { ok: true };
}

/**
 * Checks a consistency proof offline and says why it does not hold: both checkpoints (each a signed note's text, or an
 * `AuditCheckpoint` as `checkpoint()` returns and `anchor` receives — its `note` is what is
 * checked) are signed by one of the keys,
 * name the same log (origin), are of the proof's sizes, and the proof shows that the
 * older tree is a prefix of the newer one (RFC 9162 section 2.1.4.2).
 *
 * @returns `{ ok: true }`, or `{ ok: false, reason }` naming the first check that failed.
 * @throws InvalidAuditProofError when the proof is malformed; InvalidNoteKeyError for an unusable key.
 */
export function checkConsistency(
  older: string | AuditCheckpoint,
  newer: string | AuditCheckpoint,
  proof: AuditConsistencyProof,
  publicKey: AuditPublicKey | readonly AuditPublicKey[],
): AuditProofResult {
  checkObject(proof, 'the proof');
  const oldSize = checkSize(proof.oldSize, 'oldSize');
  const newSize = checkSize(proof.newSize, 'newSize');
  const path = checkPath(proof.path);
  const a = openCheckpoint(noteOf(older, 'the older checkpoint'), publicKey, 'the older checkpoint');
  if (!a.ok) return a;
  const b = openCheckpoint(noteOf(newer, 'the newer checkpoint'), publicKey, 'the newer checkpoint');
  if (!b.ok) return b;
  const disagreement = disagreesWithNote(older, a.checkpoint, 'the older checkpoint') ?? disagreesWithNote(newer, b.checkpoint, 'the newer checkpoint');
  if (disagreement) return fail(disagreement);
  if (a.checkpoint.origin !== b.checkpoint.origin) {
    return fail(`the checkpoints are of different logs (${JSON.stringify(a.checkpoint.origin)} and ${JSON.stringify(b.checkpoint.origin)})`);
  }
  if (a.checkpoint.treeSize !== BigInt(oldSize)) return fail(`the older checkpoint is of tree size ${a.checkpoint.treeSize}, the proof says ${oldSize}`);
  if (b.checkpoint.treeSize !== BigInt(newSize)) return fail(`the newer checkpoint is of tree size ${b.checkpoint.treeSize}, the proof says ${newSize}`);
  if (oldSize > newSize) return fail(`the older tree size ${oldSize} is larger than the newer ${newSize}`);
  if (!verifyConsistencyProof(oldSize, newSize, a.checkpoint.rootHash, b.checkpoint.rootHash, path)) {
    return fail(`the proof does not show that the tree of size ${oldSize} is a prefix of the tree of size ${newSize}`);
  }
  return { ok: true };
}

/** A checkpoint's signed note: the text itself, or the `note` of an `AuditCheckpoint`. */
function noteOf(checkpoint: string | AuditCheckpoint, what: string): string {
  if (typeof checkpoint === 'string') return checkpoint;
  if (checkpoint !== null && typeof checkpoint === 'object' && typeof (checkpoint as { note?: unknown }).note === 'string') return checkpoint.note;
  throw new InvalidAuditProofError(`${what} must be a signed note's text or a checkpoint { treeSize, rootHash, note }`);
}

/** Why an `AuditCheckpoint`'s `treeSize` or `rootHash` is not what its signed note says, if it is not. */
function disagreesWithNote(given: string | AuditCheckpoint, signed: Checkpoint, what: string): string | undefined {
  if (typeof given === 'string') return undefined;
  if (given.treeSize !== undefined && String(given.treeSize) !== String(signed.treeSize)) return `${what} says tree size ${String(given.treeSize)}, its signed note ${signed.treeSize}`;
  if (given.rootHash !== undefined && given.rootHash !== signed.rootHash.toString('base64')) return `${what}'s rootHash is not the root hash of its signed note`;
  return undefined;
}

/**
 * The key names of a signed note's signature lines (none when it has no signature block),
 * leaving out names no key can have: such a line verifies under no key, and a malformed
 * note is the proof's fault, not the caller's key's.
 */
export function signatureKeyNames(note: string): string[] {
  if (typeof note !== 'string') return [];
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return [];
  const names = new Set<string>();
  for (const line of note.slice(split + 2).split('\n')) {
    if (!line.startsWith('\u2014 ')) continue;
    const name = line.slice(2).split(' ')[0];
    if (isValidKeyName(name)) names.add(name);
  }
  return [...names];
}

type Opened = { ok: true; checkpoint: Checkpoint } | { ok: false; reason: string };

function openCheckpoint(note: string, keys: AuditPublicKey | readonly AuditPublicKey[], what: string): Opened {
  const verifiers = verifiersFor(note, keys);
  try {
    const opened = openNote(note, verifiers);
    return { ok: true, checkpoint: parseCheckpoint(opened.text) };
  } catch (err) {
    if (err instanceof InvalidNoteKeyError) throw err;
    return fail(`${what} does not verify: ${(err as Error).message}`);
  }
}

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

function dedupe(verifiers: NoteVerifier[]): NoteVerifier[] {
  const seen = new Map<string, NoteVerifier>();
  for (const v of verifiers) {
    const key = `${v.name}+${v.keyId}`;
    if (!seen.has(key)) seen.set(key, v);
  }
  return [...seen.values()];
}

function checkObject(value: unknown, what: string): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidAuditProofError(`${what} is not an object`);
}

/**
 * An event to hash must be the row its leaf was hashed from: `find()`'s `AuditEvent` nests
 * actor, request and target (and leaves out empty columns), so hashing it would report an
 * untouched event as changed.
 */
function checkEventRow(event: unknown): void {
  checkObject(event, 'the event');
  const nested = ['actor', 'request', 'target'].find((member) => {
    const value = (event as Record<string, unknown>)[member];
    return value !== null && typeof value === 'object';
  });
  if (nested !== undefined) {
    throw new InvalidAuditProofError(
      `the event has a nested "${nested}": it is an AuditEvent as find() and history() return it, not the row its leaf was hashed from; ` +
        'give the audit_log row (an AuditLogEntity) or an object of a JSON Lines export',
    );
  }
}

function checkSize(value: unknown, member: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidAuditProofError(`${member} is not a non-negative integer (got ${JSON.stringify(value)})`);
  }
  return value;
}

function checkPath(path: unknown): Buffer[] {
  if (!Array.isArray(path)) throw new InvalidAuditProofError('path is not an array of base64 hashes');
  return path.map((hash, i) => checkHash(hash, `path[${i}]`));
}

/** Standard padded base64 of exactly 32 bytes. */
function checkHash(value: unknown, member: string): Buffer {
  if (typeof value === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(value)) {
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length === 32 && bytes.toString('base64') === value) return bytes;
  }
  throw new InvalidAuditProofError(`${member} is not the base64 of a 32-byte hash (got ${JSON.stringify(value)})`);
}
