import {
  createHash,
  createPrivateKey,
  createPublicKey,
  KeyObject,
  sign as cryptoSign,
  verify as cryptoVerify,
} from 'node:crypto';
import { InvalidNoteKeyError } from '../exceptions/invalid-note-key.error.js';
import { InvalidNoteSignatureError } from '../exceptions/invalid-note-signature.error.js';
import { MalformedCheckpointError } from '../exceptions/malformed-checkpoint.error.js';
import { MalformedNoteError } from '../exceptions/malformed-note.error.js';
import { UnverifiedNoteError } from '../exceptions/unverified-note.error.js';

/*
 * Checkpoints and signed notes in the C2SP formats (c2sp.org/tlog-checkpoint and
 * c2sp.org/signed-note), with Ed25519 keys from node:crypto. The verifier key string
 * (`<name>+<key id>+<base64(0x01 || public key)>`) is the one of golang.org/x/mod/sumdb/note,
 * so keys and notes interoperate with the Go tooling of transparency logs.
 */

/** Signature type byte of Ed25519 in signed notes. */
const ED25519 = 0x01;
/** Ed25519 public keys and RFC 6962 (SHA-256) root hashes are both 32 bytes. */
const KEY_SIZE = 32;
const HASH_SIZE = 32;
/** Largest tree size a checkpoint can name (an unsigned 64-bit number). */
const MAX_TREE_SIZE = 2n ** 64n - 1n;
/** Signatures read from one note at most; the signed-note spec asks for at least 16. */
const MAX_SIGNATURES = 100;
const SIGNATURE_PREFIX = '\u2014 ';

/** The three lines of a log's tree head, and any extension lines. */
export interface Checkpoint {
  /** The log's identity, e.g. `audit.example.com/orders`. */
  origin: string;
  /** The number of leaves in the tree. */
  treeSize: bigint;
  /** The RFC 6962 / RFC 9162 root hash of the tree at `treeSize` (32 bytes). */
  rootHash: Buffer;
  /** Opaque lines after the root hash (none unless given). */
  extensions: string[];
}

/** What `formatCheckpoint` takes. */
export interface CheckpointInput {
  origin: string;
  treeSize: number | bigint;
  rootHash: Uint8Array;
  extensions?: readonly string[];
}

/** Signs note texts with one Ed25519 key. */
export interface NoteSigner {
  /** The key name written in the signature line. */
  readonly name: string;
  /** `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, as an unsigned 32-bit number. */
  readonly keyId: number;
  /** The Ed25519 public key matching the private key. */
  readonly publicKey: KeyObject;
  sign(text: Buffer): Buffer;
}

/** Verifies note signatures made by one Ed25519 key. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly publicKey: KeyObject;
  verify(text: Buffer, signature: Buffer): boolean;
}

/** One signature line of a note. */
export interface NoteSignature {
  keyName: string;
  keyId: number;
  /** The signature line's base64 (key id and signature bytes). */
  base64: string;
}

/** A note whose signatures were checked. */
export interface OpenedNote {
  /** The signed text, ending in a newline (without the blank line before the signatures). */
  text: string;
  /** Signatures by known keys, each verified. */
  verified: NoteSignature[];
  /** Signatures by keys not among the verifiers given (ignored, as the spec requires). */
  unknown: NoteSignature[];
}

// ---------------------------------------------------------------- checkpoints

/** The checkpoint's note text: origin, tree size, base64 root hash and extension lines, each ending in "\n". */
export function formatCheckpoint(input: CheckpointInput): string {
  const { origin, treeSize, rootHash, extensions = [] } = input;
  if (typeof origin !== 'string' || origin === '') throw new MalformedCheckpointError('the origin is empty');
  checkLine('the origin', origin);
  const size = toTreeSize(treeSize);
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== HASH_SIZE) {
    throw new MalformedCheckpointError(
      `the root hash must be ${HASH_SIZE} bytes, got ${rootHash instanceof Uint8Array ? `${rootHash.length} bytes` : typeof rootHash}`,
    );
  }
  extensions.forEach((line, i) => {
    if (typeof line !== 'string' || line === '') throw new MalformedCheckpointError(`extension line ${i + 1} is empty`);
    checkLine(`extension line ${i + 1}`, line);
  });
  return [origin, size.toString(), Buffer.from(rootHash).toString('base64'), ...extensions].map((l) => `${l}\n`).join('');
}

/**
 * The checkpoint a signed note's text names (the text before its signature block), its
 * signatures not checked: what a stored note says, for comparison with what else is stored.
 */
export function checkpointOfNote(note: string): Checkpoint {
  return parseCheckpoint(note.slice(0, note.lastIndexOf('\n\n') + 1));
}

/** Reads a checkpoint's note text (as returned by `openNote(...).text`). */
export function parseCheckpoint(text: string): Checkpoint {
  if (typeof text !== 'string') throw new MalformedCheckpointError(`expected text, got ${typeof text}`);
  if (!text.endsWith('\n')) throw new MalformedCheckpointError('the text does not end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) {
    throw new MalformedCheckpointError(`expected at least 3 lines (origin, tree size, root hash), got ${lines.length}`);
  }
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin === '') throw new MalformedCheckpointError('the origin (line 1) is empty');
  checkLine('the origin', origin);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine)) {
    throw new MalformedCheckpointError(
      `tree size (line 2) ${JSON.stringify(sizeLine)} is not a decimal number without leading zeroes`,
    );
  }
  const treeSize = BigInt(sizeLine);
  if (treeSize > MAX_TREE_SIZE) throw new MalformedCheckpointError(`tree size ${sizeLine} does not fit in 64 bits`);
  const rootHash = decodeBase64(rootLine);
  if (!rootHash || rootHash.length !== HASH_SIZE) {
    throw new MalformedCheckpointError(
      `root hash (line 3) ${JSON.stringify(rootLine)} is not the standard base64 of ${HASH_SIZE} bytes`,
    );
  }
  extensions.forEach((line, i) => {
    if (line === '') {
      throw new MalformedCheckpointError(
        `line ${i + 4} is empty (extension lines must not be; pass the note's text, not the whole signed note)`,
      );
    }
    checkLine(`line ${i + 4}`, line);
  });
  return { origin, treeSize, rootHash, extensions };
}

function toTreeSize(treeSize: number | bigint): bigint {
  if (typeof treeSize === 'bigint') {
    if (treeSize < 0n || treeSize > MAX_TREE_SIZE) {
      throw new MalformedCheckpointError(`tree size ${treeSize} is not between 0 and 2^64 - 1`);
    }
    return treeSize;
  }
  if (typeof treeSize !== 'number' || !Number.isSafeInteger(treeSize) || treeSize < 0) {
    throw new MalformedCheckpointError(`tree size ${String(treeSize)} is not a non-negative safe integer or a bigint`);
  }
  return BigInt(treeSize);
}

function checkLine(what: string, line: string): void {
  const bad = firstControlCharacter(line, false);
  if (bad !== undefined) {
    throw new MalformedCheckpointError(`${what} ${JSON.stringify(line)} contains ${describeCharacter(bad)}`);
  }
  if (!isWellFormed(line)) throw new MalformedCheckpointError(`${what} ${JSON.stringify(line)} is not valid Unicode`);
}

// ---------------------------------------------------------------- keys

/** A signer for notes from an Ed25519 private key (a `KeyObject` or PEM text). */
export function createSigner(name: string, privateKey: KeyObject | string): NoteSigner {
  checkKeyName(name);
  const key = toPrivateKey(privateKey);
  const publicKey = createPublicKey(key);
  const keyId = computeKeyId(name, rawPublicKey(publicKey));
  return {
    name,
    keyId,
    publicKey,
    sign: (text) => cryptoSign(null, text, key),
  };
}

/** A verifier for notes from an Ed25519 public key (a `KeyObject` or PEM text). */
export function createVerifier(name: string, publicKey: KeyObject | string): NoteVerifier {
  checkKeyName(name);
  return verifierFor(name, toPublicKey(publicKey));
}

/**
 * The verifier key string of a public key, `<name>+<8 hex digits key id>+<base64(0x01 || key)>`
 * (the format of golang.org/x/mod/sumdb/note), to hand to whoever checks notes offline.
 */
export function verifierKey(name: string, publicKey: KeyObject | string): string {
  const verifier = createVerifier(name, publicKey);
  const encoded = Buffer.concat([Buffer.of(ED25519), rawPublicKey(verifier.publicKey)]).toString('base64');
  return `${name}+${hex(verifier.keyId)}+${encoded}`;
}

/** The verifier of a verifier key string made by `verifierKey` (or by Go's sumdb/note). */
export function parseVerifierKey(vkey: string): NoteVerifier {
  if (typeof vkey !== 'string') throw new InvalidNoteKeyError(`expected a verifier key string, got ${typeof vkey}`);
  // The name has no plus; the base64 key may.
  const match = /^([^+]*)\+([^+]*)\+(.*)$/s.exec(vkey);
  if (!match) {
    throw new InvalidNoteKeyError(
      `verifier key ${JSON.stringify(vkey)} is not of the form <name>+<key id>+<base64 key>`,
    );
  }
  const [, name, idHex, keyBase64] = match as unknown as [string, string, string, string];
  checkKeyName(name);
  if (!/^[0-9a-f]{8}$/i.test(idHex)) {
    throw new InvalidNoteKeyError(`key id ${JSON.stringify(idHex)} of verifier key ${JSON.stringify(vkey)} is not 8 hex digits`);
  }
  const key = decodeBase64(keyBase64);
  if (!key || key.length === 0) {
    throw new InvalidNoteKeyError(`the key of verifier key ${JSON.stringify(vkey)} is not standard base64`);
  }
  const id = parseInt(idHex, 16);
  if (id !== keyIdOf(name, key)) {
    throw new InvalidNoteKeyError(`key id ${idHex} of verifier key ${JSON.stringify(vkey)} does not match its name and key`);
  }
  if (key[0] !== ED25519) {
    throw new InvalidNoteKeyError(`verifier key ${JSON.stringify(vkey)} uses signature type ${key[0]}, not Ed25519 (1)`);
  }
  if (key.length !== 1 + KEY_SIZE) {
    throw new InvalidNoteKeyError(
      `the Ed25519 key of verifier key ${JSON.stringify(vkey)} is ${key.length - 1} bytes, not ${KEY_SIZE}`,
    );
  }
  const publicKey = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: key.subarray(1).toString('base64url') },
    format: 'jwk',
  });
  return verifierFor(name, publicKey);
}

function verifierFor(name: string, publicKey: KeyObject): NoteVerifier {
  const keyId = computeKeyId(name, rawPublicKey(publicKey));
  return {
    name,
    keyId,
    publicKey,
    verify: (text, signature) => {
      try {
        return cryptoVerify(null, text, publicKey, signature);
      } catch {
        return false;
      }
    },
  };
}

/** `SHA-256(name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]`, big-endian. */
function computeKeyId(name: string, rawKey: Buffer): number {
  return keyIdOf(name, Buffer.concat([Buffer.of(ED25519), rawKey]));
}

function keyIdOf(name: string, typedKey: Buffer): number {
  return createHash('sha256').update(name, 'utf8').update('\n').update(typedKey).digest().readUInt32BE(0);
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const raw = typeof jwk.x === 'string' ? Buffer.from(jwk.x, 'base64url') : undefined;
  if (!raw || raw.length !== KEY_SIZE) throw new InvalidNoteKeyError('could not read the 32 bytes of the Ed25519 public key');
  return raw;
}

/**
 * The problem of PEM text whose line breaks are the two characters `\n` (as an environment
 * variable or a JSON string escaped once too often holds it), or `undefined`. OpenSSL
 * answers such text with a decoder error code only.
 */
export function escapedPemProblem(text: string): string | undefined {
  if (!text.includes('-----BEGIN') || text.includes('\n') || !text.includes('\\n')) return undefined;
  return 'is a PEM whose line breaks are the two characters \\n (as an environment variable often holds it): turn them into line breaks first, e.g. key.replace(/\\\\n/g, "\\n")';
}

function toPrivateKey(key: KeyObject | string): KeyObject {
  let object: KeyObject;
  if (key instanceof KeyObject) {
    object = key;
  } else if (typeof key === 'string') {
    const escaped = escapedPemProblem(key);
    if (escaped) throw new InvalidNoteKeyError(`the private key ${escaped}`);
    try {
      object = createPrivateKey(key);
    } catch (err) {
      throw new InvalidNoteKeyError(`the private key is not a PEM private key (${(err as Error).message})`);
    }
  } else {
    throw new InvalidNoteKeyError(`expected an Ed25519 private KeyObject or PEM string, got ${typeof key}`);
  }
  if (object.type !== 'private') throw new InvalidNoteKeyError(`expected a private key, got a ${object.type} key`);
  checkEd25519(object);
  return object;
}

/** The public `KeyObject` of an Ed25519 key given as a KeyObject (public or private) or PEM text; throws `InvalidNoteKeyError` for any other key. */
export function toPublicKey(key: KeyObject | string): KeyObject {
  let object: KeyObject;
  if (key instanceof KeyObject) {
    object = key.type === 'private' ? createPublicKey(key) : key;
  } else if (typeof key === 'string') {
    const escaped = escapedPemProblem(key);
    if (escaped) throw new InvalidNoteKeyError(`the public key ${escaped}`);
    try {
      object = createPublicKey(key);
    } catch (err) {
      throw new InvalidNoteKeyError(`the public key is not a PEM key (${(err as Error).message})`);
    }
  } else {
    throw new InvalidNoteKeyError(`expected an Ed25519 public KeyObject or PEM string, got ${typeof key}`);
  }
  if (object.type !== 'public') throw new InvalidNoteKeyError(`expected a public key, got a ${object.type} key`);
  checkEd25519(object);
  return object;
}

function checkEd25519(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new InvalidNoteKeyError(`the key is ${key.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`);
  }
}

/** Key names are non-empty, with no Unicode space and no plus (signed-note spec). */
function checkKeyName(name: string): void {
  if (!isValidKeyName(name)) {
    throw new InvalidNoteKeyError(
      `key name ${JSON.stringify(name)} must be non-empty, without spaces, plus signs or control characters`,
    );
  }
}

export function isValidKeyName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name !== '' &&
    !/[\p{White_Space}+]/u.test(name) &&
    firstControlCharacter(name, false) === undefined &&
    isWellFormed(name)
  );
}

// ---------------------------------------------------------------- signed notes

/**
 * The signed note of `text`: the text, a blank line, and one signature line
 * `— <key name> <base64(key id || Ed25519 signature)>` per signer, in the order given.
 * Several signers let a new key sign beside the old one while keys rotate.
 */
export function signNote(text: string, signers: NoteSigner | readonly NoteSigner[]): string {
  checkNoteText(text);
  const list = Array.isArray(signers) ? (signers as readonly NoteSigner[]) : [signers as NoteSigner];
  if (list.length === 0) throw new MalformedNoteError('no signer given');
  const bytes = Buffer.from(text, 'utf8');
  const lines = list.map((signer) => {
    if (!signer || !isValidKeyName(signer.name)) {
      throw new InvalidNoteKeyError(`signer key name ${JSON.stringify(signer?.name)} is not a valid key name`);
    }
    const id = Buffer.alloc(4);
    id.writeUInt32BE(signer.keyId >>> 0);
    const signature = Buffer.concat([id, signer.sign(bytes)]).toString('base64');
    return `${SIGNATURE_PREFIX}${signer.name} ${signature}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

/**
 * Reads a signed note and checks its signatures against the known keys. Signatures by
 * unknown keys (another name, or another key id under a known name) are listed and
 * ignored. Throws `MalformedNoteError` for a note of the wrong shape,
 * `InvalidNoteSignatureError` when a known key's signature does not verify, and
 * `UnverifiedNoteError` when no known key signed it.
 *
 * With `signatures: false` the signature lines are read but none is checked, and a note
 * no known key signed is returned (every signature listed as unknown): what a reader with
 * no public key can say about a note, its shape and its text.
 */
export function openNote(note: string | Uint8Array, verifiers: readonly NoteVerifier[], options?: { signatures?: boolean }): OpenedNote {
  const message = toNoteString(note);
  const bad = firstControlCharacter(message, true);
  if (bad !== undefined) throw new MalformedNoteError(`the note contains ${describeCharacter(bad)}`);

  const split = message.lastIndexOf('\n\n');
  if (split < 0) throw new MalformedNoteError('no blank line separates the text from the signatures');
  const text = message.slice(0, split + 1);
  const block = message.slice(split + 2);
  if (block === '') throw new MalformedNoteError('the note has no signature lines');
  if (!block.endsWith('\n')) throw new MalformedNoteError('the last signature line does not end in a newline');

  const known = indexVerifiers(verifiers);
  const textBytes = Buffer.from(text, 'utf8');
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  const seenKnown = new Set<string>();
  const seenUnknown = new Set<string>();
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) {
    throw new MalformedNoteError(`the note has ${lines.length} signature lines, more than ${MAX_SIGNATURES}`);
  }
  lines.forEach((line, i) => {
    const where = `signature line ${i + 1}`;
    if (!line.startsWith(SIGNATURE_PREFIX)) {
      throw new MalformedNoteError(`${where} ${JSON.stringify(line)} does not start with an em dash and a space`);
    }
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(' ');
    const keyName = space < 0 ? rest : rest.slice(0, space);
    const base64 = space < 0 ? '' : rest.slice(space + 1);
    if (!isValidKeyName(keyName)) throw new MalformedNoteError(`${where} has an invalid key name ${JSON.stringify(keyName)}`);
    const raw = decodeBase64(base64);
    if (!raw || raw.length < 5) {
      throw new MalformedNoteError(`${where} (key ${keyName}) does not carry the standard base64 of a key id and a signature`);
    }
    const keyId = raw.readUInt32BE(0);
    const signature: NoteSignature = { keyName, keyId, base64 };
    const verifier = known.get(mapKey(keyName, keyId));
    if (!verifier) {
      if (!seenUnknown.has(line)) unknown.push(signature);
      seenUnknown.add(line);
      return;
    }
    const valid = verifier.verify(textBytes, raw.subarray(4));
    if (!valid) throw new InvalidNoteSignatureError(keyName, keyId);
    if (seenKnown.has(mapKey(keyName, keyId))) return;
    seenKnown.add(mapKey(keyName, keyId));
    verified.push(signature);
  });

  if (verified.length === 0 && options?.signatures !== false) {
    throw new UnverifiedNoteError(
      unknown.map(({ keyName, keyId }) => ({ keyName, keyId })),
      renamedKeys(unknown, verifiers),
    );
  }
  return { text, verified, unknown };
}

/**
 * The given keys that made an unknown signature under another name (a verifier key string
 * names its key, and the key id covers the name): `{ given, signedAs }` names.
 */
function renamedKeys(unknown: readonly NoteSignature[], verifiers: readonly NoteVerifier[]): Array<{ given: string; signedAs: string }> {
  const renamed: Array<{ given: string; signedAs: string }> = [];
  for (const signature of unknown) {
    for (const verifier of verifiers) {
      if (verifier.name !== signature.keyName && computeKeyId(signature.keyName, rawPublicKey(verifier.publicKey)) === signature.keyId) {
        renamed.push({ given: verifier.name, signedAs: signature.keyName });
      }
    }
  }
  return renamed;
}

function indexVerifiers(verifiers: readonly NoteVerifier[]): Map<string, NoteVerifier> {
  if (!Array.isArray(verifiers)) throw new InvalidNoteKeyError('expected a list of verifiers');
  const known = new Map<string, NoteVerifier>();
  for (const verifier of verifiers) {
    const key = mapKey(verifier.name, verifier.keyId);
    const existing = known.get(key);
    if (existing && !existing.publicKey.equals(verifier.publicKey)) {
      throw new InvalidNoteKeyError(`two different keys share the key name and id ${verifier.name}+${hex(verifier.keyId)}`);
    }
    known.set(key, verifier);
  }
  return known;
}

function checkNoteText(text: string): void {
  if (typeof text !== 'string') throw new MalformedNoteError(`expected the note text as a string, got ${typeof text}`);
  if (!text.endsWith('\n')) throw new MalformedNoteError('the text to sign does not end in a newline');
  if (!isWellFormed(text)) throw new MalformedNoteError('the text to sign is not valid Unicode');
  const bad = firstControlCharacter(text, true);
  if (bad !== undefined) throw new MalformedNoteError(`the text to sign contains ${describeCharacter(bad)}`);
}

function toNoteString(note: string | Uint8Array): string {
  if (typeof note === 'string') {
    if (!isWellFormed(note)) throw new MalformedNoteError('the note is not valid Unicode');
    return note;
  }
  if (note instanceof Uint8Array) {
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(note);
    } catch {
      throw new MalformedNoteError('the note is not valid UTF-8');
    }
  }
  throw new MalformedNoteError(`expected the note as a string or bytes, got ${typeof note}`);
}

// ---------------------------------------------------------------- helpers

const mapKey = (name: string, keyId: number): string => `${name}+${hex(keyId)}`;

const hex = (keyId: number): string => (keyId >>> 0).toString(16).padStart(8, '0');

/** Standard, padded base64 (RFC 4648 section 4) only; `undefined` for anything else. */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/** The first ASCII control character (below U+0020), the newline allowed or not. */
function firstControlCharacter(text: string, allowNewline: boolean): string | undefined {
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (code < 0x20 && !(allowNewline && ch === '\n')) return ch;
  }
  return undefined;
}

const describeCharacter = (ch: string): string =>
  ch === '\n' ? 'a newline' : `control character U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;

/** No lone surrogates, so the text has one UTF-8 encoding. */
function isWellFormed(text: string): boolean {
  return !/\p{Surrogate}/u.test(text);
}
