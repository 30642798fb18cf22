// Acceptance scenarios of inclusion and consistency proofs, keys in each documented form,
// checkpoints made under concurrent writes and across restarts, and key rotation: what a
// user does with AuditService, the exported checkers and `npx nestjs-system-audit`.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AuditLogEntity,
  checkConsistency,
  InvalidAuditProofError,
  checkInclusion,
  exportEventLine,
  verifyConsistency,
  verifyInclusion,
  type AuditCheckpoint,
  type AuditInclusionProof,
} from '../../lib/index.js';
import { InvalidNoteKeyError } from '../../lib/exceptions/invalid-note-key.error.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliProblemBriefs, cliProcess, problemBriefs } from '../support/integrity.js';
import { independentVerifierKey, scenarioDatabase, type ScenarioDatabase } from '../support/integrity-scenario.js';
import { databases } from '../support/test-database.js';

// Several tests run the CLI as a process up to seven times, one after the other (a Node
// start and a database connection each: seconds apiece on a busy machine).
vi.setConfig({ testTimeout: 120_000 });

const ORIGIN = 'intS.example.test/proofs';

/** `keygen --name ORIGIN` run as a user runs it: the private PEM and the verifier key of its last line. */
async function keygen(dir: string): Promise<{ pem: string; vkey: string; vkeyFile: string; privateKey: KeyObject; publicPem: string }> {
  const run = await cliProcess('keygen', '--name', ORIGIN);
  expect(run.code, run.stderr).toBe(0);
  const lines = run.stdout.trimEnd().split('\n');
  const vkey = lines.at(-1)!;
  const pem = run.stdout.slice(0, run.stdout.indexOf('-----END PRIVATE KEY-----') + '-----END PRIVATE KEY-----'.length) + '\n';
  const vkeyFile = join(dir, `intS-${randomUUID()}.vkey`);
  writeFileSync(vkeyFile, `${vkey}\n`);
  const privateKey = createPrivateKey(pem);
  const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string;
  return { pem, vkey, vkeyFile, privateKey, publicPem };
}

it('InvalidNoteKeyError, which the checkers throw for a key that is not Ed25519, can be imported from the package', async () => {
  const pkg = (await import('nestjs-system-audit')) as Record<string, unknown>;
  expect(typeof pkg['InvalidNoteKeyError']).toBe('function');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
  let thrown: unknown;
  try {
    verifyConsistency('x', 'y', { oldSize: 1, newSize: 1, path: [] }, rsa);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(pkg['InvalidNoteKeyError'] as new () => Error);
});

describe.each(databases())('scenario: proofs, keys and checkpoints on %s', (kind) => {
  let dir: string;
  let sdb: ScenarioDatabase;
  let t: TestApp | undefined;
  let key: Awaited<ReturnType<typeof keygen>>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-proofs-'));
    key = await keygen(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await t?.close();
    t = undefined;
    await sdb?.db.drop();
  });

  async function boot(signingKey: string | KeyObject, extra: { verificationKeys?: Array<string | KeyObject> } = {}): Promise<TestApp> {
    return createTestApp({
      db: sdb.db,
      adapter: 'express',
      audit: { integrity: { signingKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 }, ...extra } },
    });
  }

  async function write(app: TestApp, from: number, to: number): Promise<void> {
    for (let n = from; n <= to; n++) await app.audit.log({ action: 'payment.captured', reason: `payment ${n}`, target: { type: 'payment', id: String(n) }, context: { cents: n * 100 } });
  }

  it('the keygen verifier key is what the documented signed-note format gives for the key', () => {
    expect(key.vkey).toBe(independentVerifierKey(ORIGIN, key.privateKey));
    expect(key.vkey.startsWith(`${ORIGIN}+`)).toBe(true);
  });

  it('a proof written to a file is checked by verify-proof against another copy of the data, with the public key only', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 9);
    await t.audit.checkpoint();
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const proof = await t.audit.prove(rows[4]!.id);
    expect(proof).toMatchObject({ id: rows[4]!.id, seq: 5, leafIndex: 4, treeSize: 9 });
    const proofFile = join(dir, `intS-proof-${randomUUID()}.json`);
    writeFileSync(proofFile, JSON.stringify(proof, null, 2));
    const copy = await sdb.copy(t.dataSource);
    await t.close();
    t = undefined;
    // Only the verifier key, as a string and as a file; against the copy.
    for (const publicKey of [key.vkey, key.vkeyFile]) {
      const run = await cliProcess('verify-proof', proofFile, '--public-key', publicKey, ...copy);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^OK/);
    }
    // Without a copy: the proof alone.
    const alone = await cliProcess('verify-proof', proofFile, '--public-key', key.vkeyFile);
    expect(alone.code, alone.stdout + alone.stderr).toBe(0);
    // A public PEM file.
    const pemFile = join(dir, `intS-${randomUUID()}.pem`);
    writeFileSync(pemFile, key.publicPem);
    const pem = await cliProcess('verify-proof', proofFile, '--public-key', pemFile, ...copy);
    expect(pem.code, pem.stdout + pem.stderr).toBe(0);
    // verify of the copy itself.
    const verified = await cliProcess('verify', ...copy, '--public-key', key.vkey);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    // Another key: the proof does not hold.
    const other = independentVerifierKey(ORIGIN, generateKeyPairSync('ed25519').privateKey);
    const wrongKey = await cliProcess('verify-proof', proofFile, '--public-key', other, ...copy);
    expect(wrongKey.code, wrongKey.stdout + wrongKey.stderr).toBe(1);
    // A tampered proof: exit 1.
    const tampered = { ...proof, seq: 6, leafIndex: 5 };
    const tamperedFile = join(dir, `intS-proof-${randomUUID()}.json`);
    writeFileSync(tamperedFile, JSON.stringify(tampered));
    const bad = await cliProcess('verify-proof', tamperedFile, '--public-key', key.vkey, ...copy);
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
  });

  it('verify-proof against a copy whose event was changed: exit 1', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 5);
    await t.audit.checkpoint();
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const proof = await t.audit.prove(rows[2]!.id);
    const proofFile = join(dir, `intS-proof-${randomUUID()}.json`);
    writeFileSync(proofFile, JSON.stringify(proof));
    // The copy is an export, edited.
    const exported = join(dir, `intS-${randomUUID()}.jsonl`);
    expect((await cli('export', ...sdb.url, '--out', exported)).code).toBe(0);
    const good = await cli('verify-proof', proofFile, '--public-key', key.vkey, '--events', exported);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    writeFileSync(exported, readFileSync(exported, 'utf8').replace('"reason":"payment 3"', '"reason":"payment 4"'));
    const changed = await cli('verify-proof', proofFile, '--public-key', key.vkey, '--events', exported);
    expect(changed.code, changed.stdout + changed.stderr).toBe(1);
  });

  it('verifyInclusion: true with the key as verifier string, PEM, KeyObject; after a JSON round trip; false once tampered', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.privateKey);
    await write(t, 1, 13);
    const rows = await t.dataSource.getRepository(AuditLogEntity).find();
    const byId = new Map(rows.map((row) => [row.id, row]));
    const proofs: AuditInclusionProof[] = [];
    for (const row of rows) proofs.push(await t.audit.prove(row.id));
    const keys: Array<[string, string | KeyObject]> = [
      ['verifier string', key.vkey],
      ['public PEM', key.publicPem],
      ['private PEM', key.pem],
      ['public KeyObject', createPublicKey(key.privateKey)],
      ['private KeyObject', key.privateKey],
    ];
    for (const proof of proofs) {
      const roundTripped = JSON.parse(JSON.stringify(proof)) as AuditInclusionProof;
      for (const [name, k] of keys) {
        expect(verifyInclusion(roundTripped, k), `${name} seq ${proof.seq}`).toBe(true);
      }
      expect(checkInclusion(roundTripped, key.vkey)).toEqual({ ok: true });
      // With the stored row, and with an export line's object.
      const row = (await t.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id: proof.id }))!;
      expect(verifyInclusion(roundTripped, key.vkey, row)).toBe(true);
      expect(verifyInclusion(roundTripped, key.vkey, JSON.parse(exportEventLine(row)) as { id: string; occurredAt: string })).toBe(true);
      // Another event's row does not match.
      const other = byId.get(rows.find((r) => r.id !== proof.id)!.id)!;
      expect(verifyInclusion(roundTripped, key.vkey, other)).toBe(false);
      // The checkpoint given as its note text alone.
      expect(verifyInclusion({ ...roundTripped, checkpoint: roundTripped.checkpoint.note } as never, key.vkey)).toBe(true);
    }
    const proof = JSON.parse(JSON.stringify(proofs[6])) as AuditInclusionProof;
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[0] = bytes[0]! ^ 0x01;
      return bytes.toString('base64');
    };
    const tampered: Array<[string, unknown]> = [
      ['leafHash', { ...proof, leafHash: flip(proof.leafHash) }],
      ['a path element', { ...proof, path: proof.path.map((h, i) => (i === 1 ? flip(h) : h)) }],
      ['path shortened', { ...proof, path: proof.path.slice(0, -1) }],
      ['path reversed', { ...proof, path: [...proof.path].reverse() }],
      ['leafIndex', { ...proof, leafIndex: proof.leafIndex + 1, seq: proof.seq + 1 }],
      ['treeSize', { ...proof, treeSize: proof.treeSize - 1 }],
      ['checkpoint rootHash', { ...proof, checkpoint: { ...proof.checkpoint, rootHash: flip(proof.checkpoint.rootHash) } }],
      ['checkpoint note', { ...proof, checkpoint: { ...proof.checkpoint, note: proof.checkpoint.note.replace(`\n${proof.treeSize}\n`, `\n${proof.treeSize + 1}\n`) } }],
      ['no path', { ...proof, path: undefined }],
      ['path not base64 of 32 bytes', { ...proof, path: proof.path.map(() => 'AAAA') }],
      ['seq differs from leafIndex', { ...proof, seq: proof.seq + 3 }],
    ];
    for (const [name, bad] of tampered) {
      expect(verifyInclusion(bad as AuditInclusionProof, key.vkey), name).toBe(false);
    }
    const otherKey = generateKeyPairSync('ed25519').privateKey;
    expect(verifyInclusion(proof, independentVerifierKey(ORIGIN, otherKey))).toBe(false);
    expect(verifyInclusion(proof, createPublicKey(otherKey))).toBe(false);
    expect(checkInclusion({ ...proof, leafHash: flip(proof.leafHash) }, key.vkey).ok).toBe(false);
  });

  it('verifyConsistency between two checkpoint() results: true, also round-tripped and as note text; false once tampered', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    const checkpoints: AuditCheckpoint[] = [];
    for (const [from, to] of [
      [1, 1],
      [2, 3],
      [4, 8],
      [9, 13],
      [14, 14],
    ] as const) {
      await write(t, from, to);
      checkpoints.push(await t.audit.checkpoint());
    }
    expect(checkpoints.map((c) => c.treeSize)).toEqual([1, 3, 8, 13, 14]);
    for (let i = 0; i < checkpoints.length; i++) {
      for (let j = i; j < checkpoints.length; j++) {
        const older = JSON.parse(JSON.stringify(checkpoints[i])) as AuditCheckpoint;
        const newer = JSON.parse(JSON.stringify(checkpoints[j])) as AuditCheckpoint;
        const proof = JSON.parse(JSON.stringify(await t.audit.proveConsistency(older, newer))) as { oldSize: number; newSize: number; path: string[] };
        expect(verifyConsistency(older, newer, proof, key.vkey), `${older.treeSize} -> ${newer.treeSize}`).toBe(true);
        expect(verifyConsistency(older.note, newer.note, proof, createPublicKey(key.privateKey)), `${older.treeSize} -> ${newer.treeSize} notes`).toBe(true);
        expect(checkConsistency(older, newer, proof, key.publicPem)).toEqual({ ok: true });
        if (proof.path.length > 0) {
          const bytes = Buffer.from(proof.path[0]!, 'base64');
          bytes[5] = bytes[5]! ^ 0x10;
          expect(verifyConsistency(older, newer, { ...proof, path: [bytes.toString('base64'), ...proof.path.slice(1)] }, key.vkey)).toBe(false);
        }
        if (i !== j) {
          // Swapped: an older checkpoint is not consistent "after" a newer one.
          expect(verifyConsistency(newer, older, proof, key.vkey), `${newer.treeSize} -> ${older.treeSize}`).toBe(false);
        }
      }
    }
    // A root that does not match its note.
    const [a, , c] = checkpoints as [AuditCheckpoint, AuditCheckpoint, AuditCheckpoint];
    const proof = await t.audit.proveConsistency(a, c);
    expect(verifyConsistency(a, { ...c, rootHash: checkpoints[3]!.rootHash }, proof, key.vkey)).toBe(false);
    expect(verifyConsistency(a, c, { ...proof, newSize: 13 }, key.vkey)).toBe(false);
    expect(verifyConsistency(a, c, proof, independentVerifierKey(ORIGIN, generateKeyPairSync('ed25519').privateKey))).toBe(false);
  });

  it('checkpoints made while events are written concurrently: each covers a prefix, all consistent, every event provable, verify ok', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    const app = t;
    const writers = Array.from({ length: 4 }, (_, w) =>
      (async () => {
        for (let n = 0; n < 25; n++) await app.audit.log({ action: 'payment.captured', reason: `writer ${w} payment ${n}`, context: { w, n } });
      })(),
    );
    const checkpoints: AuditCheckpoint[] = [];
    const signer = (async () => {
      for (let i = 0; i < 8; i++) {
        checkpoints.push(await app.audit.checkpoint());
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    await Promise.all([...writers, signer]);
    checkpoints.push(await app.audit.checkpoint());
    expect(checkpoints.at(-1)!.treeSize).toBe(100);
    const sizes = checkpoints.map((c) => c.treeSize);
    expect([...sizes].sort((x, y) => x - y)).toEqual(sizes);
    for (let i = 1; i < checkpoints.length; i++) {
      const proof = await app.audit.proveConsistency(checkpoints[i - 1]!, checkpoints[i]!);
      expect(verifyConsistency(checkpoints[i - 1]!, checkpoints[i]!, proof, key.vkey), `${sizes[i - 1]} -> ${sizes[i]}`).toBe(true);
    }
    const rows = await app.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    for (const row of rows.filter((_, i) => i % 7 === 0)) expect(verifyInclusion(await app.audit.prove(row.id), key.vkey, row)).toBe(true);
    const result = await app.audit.verify();
    expect(problemBriefs(result.problems)).toEqual([]);
    expect(result).toMatchObject({ ok: true, treeSize: 100 });
    const run = await cli('verify', ...sdb.url, '--public-key', key.vkey);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  it('an app restarted between checkpoints goes on with one tree: consistent checkpoints, old proofs still check', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 6);
    const first = await t.audit.checkpoint();
    const firstRows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const early = await t.audit.prove(firstRows[1]!.id);
    await write(t, 7, 9); // stored, not sequenced before the restart
    await t.close();
    t = await boot(key.privateKey);
    await write(t, 10, 11);
    const second = await t.audit.checkpoint();
    expect(second.treeSize).toBe(11);
    expect(verifyConsistency(first, second, await t.audit.proveConsistency(first, second), key.vkey)).toBe(true);
    expect(verifyInclusion(early, key.vkey)).toBe(true);
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.reason)).toEqual(Array.from({ length: 11 }, (_, i) => `payment ${i + 1}`));
    const late = await t.audit.prove(firstRows[1]!.id);
    expect(late.treeSize).toBe(11);
    expect(verifyInclusion(late, key.vkey)).toBe(true);
    expect((await t.audit.verify()).ok).toBe(true);
    const run = await cli('verify', ...sdb.url, '--public-key', key.vkeyFile);
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  it('key rotation: verified with both keys by the CLI; one key alone names the other key’s checkpoints; without a key, signatures are said to be unchecked', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 4);
    await t.audit.checkpoint();
    await write(t, 5, 6);
    await t.audit.checkpoint();
    await t.close();
    const next = await keygen(dir);
    t = await boot(next.pem, { verificationKeys: [key.vkey] });
    await write(t, 7, 9);
    const rotated = await t.audit.checkpoint();
    expect(rotated.treeSize).toBe(9);
    expect((await t.audit.verify()).ok).toBe(true);
    const both = await cli('verify', ...sdb.url, '--public-key', key.vkey, '--public-key', next.vkeyFile);
    expect(both.code, both.stdout + both.stderr).toBe(0);
    const pemFile = join(dir, `intS-${randomUUID()}.pem`);
    writeFileSync(pemFile, key.publicPem);
    const mixed = await cli('verify', ...sdb.url, '--public-key', pemFile, '--public-key', next.vkey);
    expect(mixed.code, mixed.stdout + mixed.stderr).toBe(0);
    const oldOnly = await cli('verify', ...sdb.url, '--public-key', key.vkey);
    expect(oldOnly.code).toBe(1);
    expect(cliProblemBriefs(oldOnly.stdout)).toEqual(['bad-signature seq=9 treeSize=9']);
    const newOnly = await cli('verify', ...sdb.url, '--public-key', next.vkey);
    expect(newOnly.code).toBe(1);
    expect(cliProblemBriefs(newOnly.stdout)).toEqual(['bad-signature seq=4 treeSize=4', 'bad-signature seq=6 treeSize=6']);
    const keyless = await cli('verify', ...sdb.url);
    expect(keyless.code, keyless.stdout + keyless.stderr).toBe(0);
    expect(keyless.stdout).toMatch(/checkpoint signatures NOT checked \(no --public-key\)/);
    expect(keyless.stderr.length).toBeGreaterThan(0);
    // An inclusion proof of an early event, made after the rotation, checks with the new key.
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const proof = await t.audit.prove(rows[0]!.id);
    expect(verifyInclusion(proof, next.vkey)).toBe(true);
    expect(verifyInclusion(proof, [key.vkey, next.vkey])).toBe(true);
    const proofFile = join(dir, `intS-proof-${randomUUID()}.json`);
    writeFileSync(proofFile, JSON.stringify(proof));
    const checked = await cli('verify-proof', proofFile, '--public-key', key.vkey, '--public-key', next.vkey, ...sdb.url);
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
  });

  it('the checkers refuse what the contract says they refuse: a non-Ed25519 key, an event as find() returns it, a malformed proof', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 3);
    await t.audit.checkpoint();
    const [row] = await t.dataSource.getRepository(AuditLogEntity).find({ where: { seq: 2 } });
    const proof = await t.audit.prove(row!.id);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expect(() => verifyInclusion(proof, rsa)).toThrow(InvalidNoteKeyError);
    expect(() => checkInclusion(proof, rsa)).toThrow(InvalidNoteKeyError);
    const older = await t.audit.checkpoint();
    expect(() => verifyConsistency(older, older, { oldSize: 3, newSize: 3, path: [] }, rsa)).toThrow(InvalidNoteKeyError);
    const page = (await t.audit.find({ limit: 1 } as never)) as unknown as Record<string, unknown>;
    const found = (Object.values(page).find(Array.isArray) as unknown[])[0];
    expect(found).toBeDefined();
    expect(() => verifyInclusion(proof, key.vkey, found as never)).toThrow(InvalidAuditProofError);
    expect(() => checkInclusion({ ...proof, path: undefined } as never, key.vkey)).toThrow(InvalidAuditProofError);
    expect(verifyInclusion({ ...proof, path: undefined } as never, key.vkey)).toBe(false);
    expect(verifyInclusion({ ...proof, leafHash: 'AAAA' }, key.vkey)).toBe(false);
    const rsaFile = join(dir, `intS-${randomUUID()}.pem`);
    writeFileSync(rsaFile, rsa.export({ type: 'spki', format: 'pem' }) as string);
    const run = await cli('verify', ...sdb.url, '--public-key', rsaFile);
    expect(run.code, run.stdout + run.stderr).toBe(2);
    const malformed = join(dir, `intS-${randomUUID()}.json`);
    writeFileSync(malformed, JSON.stringify({ ...proof, path: 'nope' }));
    const bad = await cli('verify-proof', malformed, '--public-key', key.vkey);
    expect(bad.code, bad.stdout + bad.stderr).toBe(2);
  });

  it.each(['public KeyObject', 'public PEM', 'private KeyObject'])('an old key given to verificationKeys as a %s verifies the old checkpoints', async (form) => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 2);
    await t.audit.checkpoint();
    await t.close();
    const old = form === 'public KeyObject' ? createPublicKey(key.privateKey) : form === 'public PEM' ? key.publicPem : key.privateKey;
    const next = generateKeyPairSync('ed25519').privateKey;
    t = await boot(next, { verificationKeys: [old] });
    await write(t, 3, 3);
    expect((await t.audit.checkpoint()).treeSize).toBe(3);
    expect(problemBriefs((await t.audit.verify()).problems)).toEqual([]);
    const run = await cli('verify', ...sdb.url, '--public-key', key.vkey, '--public-key', independentVerifierKey(ORIGIN, next));
    expect(run.code, run.stdout + run.stderr).toBe(0);
  });

  it('the CLI without --public-key still finds a changed row', async () => {
    sdb = await scenarioDatabase(kind, dir);
    t = await boot(key.pem);
    await write(t, 1, 5);
    await t.audit.checkpoint();
    const { dropAppendOnlyGuards } = await import('../support/integrity.js');
    await dropAppendOnlyGuards(t.dataSource);
    const q = (name: string) => t!.dataSource.driver.escape(name);
    const log = t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
    await t.dataSource.query(`UPDATE ${log} SET ${q('reason')} = 'x' WHERE ${q('seq')} = 2`);
    const keyless = await cli('verify', ...sdb.url);
    expect(keyless.code, keyless.stdout + keyless.stderr).toBe(1);
    expect(cliProblemBriefs(keyless.stdout)).toEqual(['modified seq=2']);
    expect(keyless.stdout).toMatch(/NOT checked/);
  });
});
