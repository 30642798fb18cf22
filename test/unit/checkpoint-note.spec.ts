import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidNoteKeyError } from '../../lib/exceptions/invalid-note-key.error.js';
import { InvalidNoteSignatureError } from '../../lib/exceptions/invalid-note-signature.error.js';
import { MalformedCheckpointError } from '../../lib/exceptions/malformed-checkpoint.error.js';
import { MalformedNoteError } from '../../lib/exceptions/malformed-note.error.js';
import { UnverifiedNoteError } from '../../lib/exceptions/unverified-note.error.js';
import {
  createSigner,
  createVerifier,
  formatCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  verifierKey,
  type NoteSigner,
} from '../../lib/integrity/checkpoint-note.js';

/*
 * Known answers from golang.org/x/mod/sumdb/note, file sumdb/note/note_test.go
 * (TestNewVerifier, TestNewSigner, TestSign, TestVerifierList, TestOpen), copied byte for byte.
 */
const GO = {
  peterSignerKey: 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz',
  peterKey: 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
  enochKey: 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop',
  text: "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n",
  peterSig:
    '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
  enochSig:
    '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n',
  signed:
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n" +
    '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
};

/* The example of c2sp.org/tlog-checkpoint (C2SP/C2SP, tlog-checkpoint.md); its public key is not published. */
const C2SP_CHECKPOINT =
  'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
  '\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n';

/* The example of c2sp.org/signed-note (C2SP/C2SP, signed-note.md); its public key is not published. */
const C2SP_NOTE =
  'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u00e8 subito sera.\n\n' +
  '\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n';

/** An Ed25519 private key from the 32-byte seed of a sumdb/note signer key (PKCS#8 DER around the seed). */
function privateKeyFromGoSignerKey(skey: string): KeyObject {
  const encoded = Buffer.from(skey.split('+').slice(4).join('+'), 'base64');
  expect(encoded[0]).toBe(1); // Ed25519
  const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
  return createPrivateKey({ key: Buffer.concat([pkcs8Prefix, encoded.subarray(1)]), format: 'der', type: 'pkcs8' });
}

const newKeys = () => generateKeyPairSync('ed25519');
const root = (fill: number) => Buffer.alloc(32, fill);
const catchError = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
};

describe('formatCheckpoint / parseCheckpoint', () => {
  it('reads the C2SP example checkpoint and writes it back byte for byte', () => {
    const text = C2SP_CHECKPOINT.slice(0, C2SP_CHECKPOINT.indexOf('\n\n') + 1);
    const checkpoint = parseCheckpoint(text);
    expect(checkpoint).toEqual({
      origin: 'example.com/behind-the-sofa',
      treeSize: 20852163n,
      rootHash: Buffer.from('CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=', 'base64'),
      extensions: [],
    });
    expect(formatCheckpoint(checkpoint)).toBe(text);
  });

  it('writes origin, decimal size, padded base64 root and extension lines, each ending in a newline', () => {
    const rootHash = Buffer.from('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex');
    expect(formatCheckpoint({ origin: 'audit.example.com/orders', treeSize: 0, rootHash })).toBe(
      'audit.example.com/orders\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n',
    );
    const text = formatCheckpoint({
      origin: 'audit.example.com/orders',
      treeSize: 2n ** 64n - 1n,
      rootHash: root(0xff),
      extensions: ['first extension', 'second'],
    });
    expect(text).toBe(
      'audit.example.com/orders\n18446744073709551615\n//////////////////////////////////////////8=\nfirst extension\nsecond\n',
    );
    expect(parseCheckpoint(text)).toEqual({
      origin: 'audit.example.com/orders',
      treeSize: 18446744073709551615n,
      rootHash: root(0xff),
      extensions: ['first extension', 'second'],
    });
  });

  it.each([
    [{ origin: '', treeSize: 1, rootHash: root(1) }, 'the origin is empty'],
    [{ origin: 'a\nb', treeSize: 1, rootHash: root(1) }, 'the origin "a\\nb" contains a newline'],
    [{ origin: 'a\tb', treeSize: 1, rootHash: root(1) }, 'contains control character U+0009'],
    [{ origin: 'o', treeSize: -1, rootHash: root(1) }, 'tree size -1 is not a non-negative safe integer or a bigint'],
    [{ origin: 'o', treeSize: 1.5, rootHash: root(1) }, 'tree size 1.5 is not'],
    [{ origin: 'o', treeSize: Number.NaN, rootHash: root(1) }, 'tree size NaN is not'],
    [{ origin: 'o', treeSize: 2 ** 53, rootHash: root(1) }, 'tree size 9007199254740992 is not'],
    [{ origin: 'o', treeSize: -1n, rootHash: root(1) }, 'tree size -1 is not between 0 and 2^64 - 1'],
    [{ origin: 'o', treeSize: 2n ** 64n, rootHash: root(1) }, 'is not between 0 and 2^64 - 1'],
    [{ origin: 'o', treeSize: 1, rootHash: Buffer.alloc(31) }, 'the root hash must be 32 bytes, got 31 bytes'],
    [{ origin: 'o', treeSize: 1, rootHash: root(1), extensions: [''] }, 'extension line 1 is empty'],
    [{ origin: 'o', treeSize: 1, rootHash: root(1), extensions: ['x', 'a\nb'] }, 'extension line 2 "a\\nb" contains a newline'],
  ] as const)('refuses to write a checkpoint: case %#', (input, message) => {
    const err = catchError(() => formatCheckpoint(input));
    expect(err).toBeInstanceOf(MalformedCheckpointError);
    expect((err as Error).message).toContain(message);
  });

  const good = `o\n5\n${root(1).toString('base64')}\n`;
  it.each([
    ['o\n5\n' + root(1).toString('base64'), 'does not end in a newline'],
    ['o\n5\n', 'expected at least 3 lines (origin, tree size, root hash), got 2'],
    [good.replace('o', ''), 'the origin (line 1) is empty'],
    [good.replace('5', '05'), 'tree size (line 2) "05" is not a decimal number without leading zeroes'],
    [good.replace('5', '-5'), 'tree size (line 2) "-5"'],
    [good.replace('5', '1e3'), 'tree size (line 2) "1e3"'],
    [good.replace('5', ' 5'), 'tree size (line 2) " 5"'],
    [good.replace('5', '18446744073709551616'), 'does not fit in 64 bits'],
    [`o\n5\n${root(1).toString('base64url')}\n`, 'root hash (line 3)'],
    [`o\n5\n${root(1).toString('base64').replace(/=$/, '')}\n`, 'root hash (line 3)'],
    [`o\n5\n${Buffer.alloc(31).toString('base64')}\n`, 'is not the standard base64 of 32 bytes'],
    [`${good}ext\n\n`, 'line 5 is empty'],
    [`${good}\n\u2014 o AAAAAAE=\n`, 'pass the note\'s text, not the whole signed note'],
  ])('refuses to read %j', (text, message) => {
    const err = catchError(() => parseCheckpoint(text));
    expect(err).toBeInstanceOf(MalformedCheckpointError);
    expect((err as Error).message).toContain(message);
  });
});

describe('keys', () => {
  it('derives the sumdb/note key id and verifier key of the Go test key (PeterNeumann)', () => {
    const signer = createSigner('PeterNeumann', privateKeyFromGoSignerKey(GO.peterSignerKey));
    expect(signer.keyId).toBe(0xc74f20a3);
    expect(verifierKey('PeterNeumann', signer.publicKey)).toBe(GO.peterKey);

    const verifier = parseVerifierKey(GO.peterKey);
    expect(verifier).toMatchObject({ name: 'PeterNeumann', keyId: 0xc74f20a3 });
    expect(verifier.publicKey.equals(signer.publicKey)).toBe(true);
  });

  it('computes the key id as SHA-256(name || 0x0A || 0x01 || public key)[:4]', () => {
    const { publicKey } = newKeys();
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    const digest = createHash('sha256').update(Buffer.concat([Buffer.from('log.example/a\n'), Buffer.of(1), raw])).digest();
    expect(createVerifier('log.example/a', publicKey).keyId).toBe(digest.readUInt32BE(0));
  });

  it('exports and imports public keys as KeyObject, PEM and verifier key string', () => {
    const { publicKey, privateKey } = newKeys();
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const vkey = verifierKey('log.example/a', pem);
    expect(vkey).toMatch(/^log\.example\/a\+[0-9a-f]{8}\+A[A-Za-z0-9+/]{43}$/);
    const fromString = parseVerifierKey(vkey);
    expect(fromString.publicKey.equals(publicKey)).toBe(true);
    expect(fromString.keyId).toBe(createSigner('log.example/a', privateKey).keyId);
    expect(createVerifier('log.example/a', pem).keyId).toBe(fromString.keyId);
    const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    expect(createSigner('log.example/a', privatePem).keyId).toBe(fromString.keyId);
  });

  it('rejects every mangling of a verifier key string, as sumdb/note does', () => {
    const bad: string[] = [];
    const b = GO.peterKey;
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) if (i !== 0 || j !== b.length) bad.push(b.slice(i, j));
    }
    for (let i = 0; i < b.length; i++) bad.push(b.slice(0, i) + String.fromCharCode(b.charCodeAt(i) + 1) + b.slice(i + 1));
    for (const vkey of bad) expect(() => parseVerifierKey(vkey), vkey).toThrow(InvalidNoteKeyError);

    // Wrong key length and unknown algorithm, each with a key id adjusted to match (from note_test.go).
    expect(() =>
      parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=='),
    ).toThrow('is not standard base64'); // Go decodes it leniently and then finds 36 key bytes
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(
      'uses signature type 101, not Ed25519 (1)',
    );
    expect(() => parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(
      'key id c74f20a4 of verifier key "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW" does not match its name and key',
    );
  });

  it('refuses keys that are not Ed25519, of the wrong kind, or badly named', () => {
    const { publicKey, privateKey } = newKeys();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => createSigner('a', rsa.privateKey)).toThrow('the key is rsa, not Ed25519');
    expect(() => createVerifier('a', rsa.publicKey)).toThrow('the key is rsa, not Ed25519');
    expect(() => createSigner('a', publicKey)).toThrow('expected a private key, got a public key');
    expect(() => createSigner('a', 'not a pem')).toThrow(InvalidNoteKeyError);
    expect(() => createVerifier('a', 'not a pem')).toThrow(InvalidNoteKeyError);
    for (const name of ['', 'two words', 'a+b', 'tab\there', 'nbsp\u00a0here', 'line\nbreak']) {
      expect(() => createSigner(name, privateKey), JSON.stringify(name)).toThrow(
        `key name ${JSON.stringify(name)} must be non-empty, without spaces, plus signs or control characters`,
      );
    }
    // A verifier built from the private key uses its public half.
    expect(createVerifier('a', privateKey).publicKey.equals(publicKey)).toBe(true);
  });
});

describe('signNote / openNote', () => {
  const peter = () => createSigner('PeterNeumann', privateKeyFromGoSignerKey(GO.peterSignerKey));
  const peterVerifier = () => parseVerifierKey(GO.peterKey);
  const enochVerifier = () => parseVerifierKey(GO.enochKey);

  it('signs exactly as sumdb/note does (Ed25519 is deterministic)', () => {
    expect(signNote(GO.text, peter())).toBe(GO.signed);
    expect(Buffer.from(signNote(GO.text, peter()), 'utf8')).toEqual(Buffer.from(GO.signed, 'utf8'));
  });

  it('opens the sumdb/note notes: one known signer, two known signers, none known', () => {
    const both = `${GO.text}\n${GO.peterSig}${GO.enochSig}`;
    const peterOnly = openNote(both, [peterVerifier()]);
    expect(peterOnly.text).toBe(GO.text);
    expect(peterOnly.verified).toEqual([
      { keyName: 'PeterNeumann', keyId: 0xc74f20a3, base64: GO.peterSig.slice(15, -1) },
    ]);
    expect(peterOnly.unknown).toEqual([{ keyName: 'EnochRoot', keyId: 0xaf0cfe78, base64: GO.enochSig.slice(12, -1) }]);

    const enochOnly = openNote(both, [enochVerifier()]);
    expect(enochOnly.verified.map((s) => s.keyName)).toEqual(['EnochRoot']);

    const all = openNote(Buffer.from(both, 'utf8'), [peterVerifier(), enochVerifier()]);
    expect(all.verified.map((s) => s.keyName)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(all.unknown).toEqual([]);

    const err = catchError(() => openNote(both, []));
    expect(err).toBeInstanceOf(UnverifiedNoteError);
    expect((err as UnverifiedNoteError).unknownSigners).toEqual([
      { keyName: 'PeterNeumann', keyId: 0xc74f20a3 },
      { keyName: 'EnochRoot', keyId: 0xaf0cfe78 },
    ]);
    expect((err as Error).message).toBe(
      'The signed note has no signature from a known key; it is signed only by unknown key(s) PeterNeumann+c74f20a3, EnochRoot+af0cfe78',
    );
  });

  it('says when a key given under one name is the key that signed under another (keygen without the --name the module signs under)', () => {
    const { privateKey, publicKey } = newKeys();
    const note = signNote('audit.example.com/orders\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n', [createSigner('audit.example.com/orders', privateKey)]);
    const err = catchError(() => openNote(note, [createVerifier('audit', publicKey), createVerifier('other', newKeys().publicKey)]));
    expect(err).toBeInstanceOf(UnverifiedNoteError);
    expect((err as UnverifiedNoteError).renamed).toEqual([{ given: 'audit', signedAs: 'audit.example.com/orders' }]);
    expect((err as Error).message).toContain(
      '; the key given as "audit" is the one that signed as "audit.example.com/orders": a verifier key string names its key, so give it under the name the checkpoints are signed under (keyName, by default the origin), e.g. keygen --name "audit.example.com/orders"',
    );
    // Another key under another name is only unknown.
    const stranger = catchError(() => openNote(note, [createVerifier('audit', newKeys().publicKey)]));
    expect((stranger as UnverifiedNoteError).renamed).toEqual([]);
    expect((stranger as Error).message).not.toContain('is the one that signed');
  });

  it('reports the signers of the C2SP examples, whose keys it does not know', () => {
    for (const [note, keyName, keyId] of [
      [C2SP_CHECKPOINT, 'example.com/behind-the-sofa', 0x033de0ae],
      [C2SP_NOTE, 'quasimodo.example/salvatore', 0x367ba04b],
    ] as const) {
      const err = catchError(() => openNote(note, [peterVerifier()]));
      expect(err).toBeInstanceOf(UnverifiedNoteError);
      expect((err as UnverifiedNoteError).unknownSigners).toEqual([{ keyName, keyId }]);
    }
  });

  it('round-trips a checkpoint through a signed note', () => {
    const { privateKey, publicKey } = newKeys();
    const signer = createSigner('audit.example.com/orders', privateKey);
    const text = formatCheckpoint({ origin: 'audit.example.com/orders', treeSize: 42, rootHash: root(7) });
    const note = signNote(text, signer);
    expect(note.startsWith(`${text}\n\u2014 audit.example.com/orders `)).toBe(true);
    const opened = openNote(note, [parseVerifierKey(verifierKey('audit.example.com/orders', publicKey))]);
    expect(parseCheckpoint(opened.text)).toEqual({
      origin: 'audit.example.com/orders',
      treeSize: 42n,
      rootHash: root(7),
      extensions: [],
    });
    expect(opened.verified[0]).toMatchObject({ keyName: 'audit.example.com/orders', keyId: signer.keyId });
    const raw = Buffer.from(opened.verified[0]!.base64, 'base64');
    expect(raw.readUInt32BE(0)).toBe(signer.keyId);
    expect(raw.length).toBe(4 + 64);
  });

  describe('key rotation', () => {
    const oldKeys = newKeys();
    const newerKeys = newKeys();
    const oldSigner = createSigner('log.example/audit', oldKeys.privateKey);
    const newSigner = createSigner('log.example/audit', newerKeys.privateKey);
    const oldVerifier = createVerifier('log.example/audit', oldKeys.publicKey);
    const newVerifier = createVerifier('log.example/audit', newerKeys.publicKey);
    const text = formatCheckpoint({ origin: 'log.example/audit', treeSize: 3, rootHash: root(3) });

    it('a note signed by the old and the new key verifies with either, or both', () => {
      const note = signNote(text, [oldSigner, newSigner]);
      expect(note.split('\n').filter((line) => line.startsWith('\u2014 '))).toHaveLength(2);
      expect(openNote(note, [oldVerifier]).verified.map((s) => s.keyId)).toEqual([oldSigner.keyId]);
      expect(openNote(note, [newVerifier]).verified.map((s) => s.keyId)).toEqual([newSigner.keyId]);
      expect(openNote(note, [newVerifier, oldVerifier]).verified.map((s) => s.keyId)).toEqual([
        oldSigner.keyId,
        newSigner.keyId,
      ]);
    });

    it('old notes stay verifiable with the old key beside the new one; new notes are unknown to the old key', () => {
      const oldNote = signNote(text, oldSigner);
      const newNote = signNote(text, newSigner);
      expect(openNote(oldNote, [oldVerifier, newVerifier]).verified).toHaveLength(1);
      expect(openNote(newNote, [oldVerifier, newVerifier]).verified).toHaveLength(1);
      const err = catchError(() => openNote(newNote, [oldVerifier]));
      expect(err).toBeInstanceOf(UnverifiedNoteError);
      expect((err as UnverifiedNoteError).unknownSigners).toEqual([
        { keyName: 'log.example/audit', keyId: newSigner.keyId },
      ]);
    });

    it('refuses two different keys under the same name and key id', () => {
      const impostor = { ...newVerifier, keyId: oldVerifier.keyId };
      expect(() => openNote(signNote(text, oldSigner), [oldVerifier, impostor])).toThrow(
        `two different keys share the key name and id log.example/audit+${oldVerifier.keyId.toString(16).padStart(8, '0')}`,
      );
      // The same key given twice is fine.
      expect(openNote(signNote(text, oldSigner), [oldVerifier, oldVerifier]).verified).toHaveLength(1);
    });
  });

  describe('tampering', () => {
    const keys = newKeys();
    const signer = createSigner('log.example/audit', keys.privateKey);
    const verifier = createVerifier('log.example/audit', keys.publicKey);
    const text = formatCheckpoint({ origin: 'log.example/audit', treeSize: 1000, rootHash: root(9) });
    const note = signNote(text, signer);
    const signatureOf = (n: string) => n.slice(n.lastIndexOf(' ') + 1, -1);

    it('a changed text fails the signature', () => {
      const forged = note.replace('\n1000\n', '\n999\n');
      const err = catchError(() => openNote(forged, [verifier]));
      expect(err).toBeInstanceOf(InvalidNoteSignatureError);
      expect(err).toMatchObject({ keyName: 'log.example/audit', keyId: signer.keyId });
      expect((err as Error).message).toContain(`Invalid signature for key log.example/audit+`);
    });

    it('a flipped bit in the signature fails it', () => {
      for (const byte of [4, 20, 67]) {
        const raw = Buffer.from(signatureOf(note), 'base64');
        raw[byte]! ^= 0x01;
        const forged = note.replace(signatureOf(note), raw.toString('base64'));
        expect(() => openNote(forged, [verifier]), `byte ${byte}`).toThrow(InvalidNoteSignatureError);
      }
    });

    it('a known signature of the same text stays rejected when another known key signature is bad', () => {
      const other = newKeys();
      const otherSigner = createSigner('witness.example', other.privateKey);
      const otherVerifier = createVerifier('witness.example', other.publicKey);
      const both = signNote(text, [signer, otherSigner]);
      const raw = Buffer.from(signatureOf(both), 'base64');
      raw[10]! ^= 0x80;
      const forged = both.replace(signatureOf(both), raw.toString('base64'));
      expect(() => openNote(forged, [verifier, otherVerifier])).toThrow(InvalidNoteSignatureError);
      expect(openNote(forged, [verifier]).unknown).toHaveLength(1); // unknown keys are only reported
    });

    it('a note signed by another key under the same name is not trusted', () => {
      const thief = createSigner('log.example/audit', newKeys().privateKey);
      const err = catchError(() => openNote(signNote(text, thief), [verifier]));
      expect(err).toBeInstanceOf(UnverifiedNoteError);
      expect((err as UnverifiedNoteError).unknownSigners).toEqual([
        { keyName: 'log.example/audit', keyId: thief.keyId },
      ]);
    });

    it("another key made to carry the known key's name and id fails the signature (key id collision)", () => {
      const attacker = newKeys();
      const colliding: NoteSigner = { ...createSigner('log.example/audit', attacker.privateKey), keyId: signer.keyId };
      const forged = signNote(text.replace('\n1000\n', '\n5\n'), colliding);
      expect(() => openNote(forged, [verifier])).toThrow(InvalidNoteSignatureError);
    });

    it('a known signature under another key id or key name is an unknown signature (key id mismatch)', () => {
      const raw = Buffer.from(signatureOf(note), 'base64');
      raw.writeUInt32BE((signer.keyId ^ 1) >>> 0, 0);
      const otherId = note.replace(signatureOf(note), raw.toString('base64'));
      expect(() => openNote(otherId, [verifier])).toThrow(UnverifiedNoteError);
      const otherName = note.replace('\u2014 log.example/audit ', '\u2014 log.example/other ');
      expect(() => openNote(otherName, [verifier])).toThrow(UnverifiedNoteError);
    });

    it('an invalid signature from the Go tests is rejected (sumdb/note TestOpen)', () => {
      const forged = `${GO.text}\n${GO.peterSig.slice(0, 60)}ABCD${GO.peterSig.slice(60)}`;
      expect(() => openNote(forged, [peterVerifier()])).toThrow(
        'Invalid signature for key PeterNeumann+c74f20a3',
      );
    });
  });

  it('drops repeated signatures and keeps distinct unknown ones (sumdb/note TestOpen)', () => {
    const enochABCD = `${GO.enochSig.slice(0, 60)}ABCD${GO.enochSig.slice(60)}`;
    const opened = openNote(`${GO.text}\n${GO.peterSig}${GO.peterSig}${GO.enochSig}${GO.enochSig}${enochABCD}`, [
      peterVerifier(),
    ]);
    expect(opened.verified).toHaveLength(1);
    expect(opened.unknown.map((s) => s.base64)).toEqual([GO.enochSig.slice(12, -1), enochABCD.slice(12, -1)]);
  });

  it.each([
    ['the text alone', GO.text, 'no blank line separates the text from the signatures'],
    ['a text and a blank line', `${GO.text}\n`, 'the note has no signature lines'],
    ['no final newline', `${GO.text}\n${GO.peterSig.slice(0, -1)}`, 'the last signature line does not end in a newline'],
    ['a control character', `\x01${GO.text}\n${GO.peterSig}`, 'the note contains control character U+0001'],
    ['a name with a space', `${GO.text}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`, 'signature line 1 (key Bad) does not carry the standard base64'],
    ['an unexpected line', `${GO.text}\n${GO.peterSig}Unexpected line.\n`, 'signature line 2 "Unexpected line." does not start with an em dash and a space'],
    ['a hyphen for the em dash', `${GO.text}\n${GO.peterSig.replace('\u2014', '-')}`, 'does not start with an em dash'],
    ['a signature too short', `${GO.text}\n\u2014 PeterNeumann x08g\n`, 'does not carry the standard base64 of a key id and a signature'],
    ['unpadded base64', `${GO.text}\n${GO.peterSig.replace('=\n', '\n')}`, 'does not carry the standard base64'],
    ['too many signatures', `${GO.text}\n${GO.peterSig.repeat(101)}`, 'the note has 101 signature lines, more than 100'],
  ])('rejects a malformed note: %s', (_what, note, message) => {
    const err = catchError(() => openNote(note, [peterVerifier()]));
    expect(err).toBeInstanceOf(MalformedNoteError);
    expect((err as Error).message).toContain(message);
  });

  it('rejects a signature line whose name is not a key name', () => {
    expect(() => openNote(`${GO.text}\n\u2014 a+b ${GO.peterSig.slice(15)}`, [peterVerifier()])).toThrow(
      'signature line 1 has an invalid key name "a+b"',
    );
  });

  it('rejects bytes that are not UTF-8', () => {
    const bytes = Buffer.concat([Buffer.of(0xff), Buffer.from(`${GO.text}\n${GO.peterSig}`)]);
    expect(() => openNote(bytes, [peterVerifier()])).toThrow('the note is not valid UTF-8');
  });

  it('refuses to sign a text that does not end in a newline, or holds control characters', () => {
    expect(() => signNote('abc', peter())).toThrow('the text to sign does not end in a newline');
    expect(() => signNote('a\x00b\n', peter())).toThrow('the text to sign contains control character U+0000');
    expect(() => signNote('a\ud800\n', peter())).toThrow('the text to sign is not valid Unicode');
    expect(() => signNote(GO.text, [])).toThrow('no signer given');
  });
});
