// Acceptance scenarios of tamper evidence with unusual but legal inputs: values the
// application may log (edge-case numbers, unicode, awkward member names), events stored
// before integrity was turned on, a key name other than the origin, two instances signing
// at once, and the command line's own proofs and checkpoints file.
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditLogEntity, fileAnchor, readCheckpointsFile, verifyConsistency, verifyInclusion, type AuditCheckpoint } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliProblemBriefs, cliProcess, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { independentVerifierKey, scenarioDatabase, type ScenarioDatabase } from '../support/integrity-scenario.js';
import { databases } from '../support/test-database.js';

// Each test runs the CLI as a process (a Node start and a database connection each:
// seconds apiece on a busy machine) besides making and proving checkpoints.
vi.setConfig({ testTimeout: 120_000 });

const ORIGIN = 'intS.example.test/inputs';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);

describe.each(databases())('scenario: unusual but legal inputs on %s', (kind) => {
  let dir: string;
  let sdb: ScenarioDatabase;
  const apps: TestApp[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-inputs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await sdb?.db.drop();
  });

  async function boot(integrity: Record<string, unknown> | false = {}): Promise<TestApp> {
    const app = await createTestApp({
      db: sdb.db,
      adapter: 'express',
      audit:
        integrity === false
          ? {}
          : { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 }, ...integrity } },
    });
    apps.push(app);
    return app;
  }

  async function expectClean(app: TestApp, size: number): Promise<void> {
    const result = await app.audit.verify();
    expect(problemBriefs(result.problems), JSON.stringify(result.problems)).toEqual([]);
    expect(result).toMatchObject({ ok: true, treeSize: size });
    // The command line's main(), in this process (the key-name and prove tests run it as `npx` does).
    const run = await cli('verify', ...sdb.url, '--public-key', VKEY);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const exported = join(dir, `intS-${randomUUID()}.jsonl`);
    const out = await cli('export', ...sdb.url, '--out', exported);
    expect(out.code, out.stderr).toBe(0);
    const checkpoints = join(dir, `intS-${randomUUID()}.txt`);
    const cps = await cli('checkpoints', ...sdb.url, '--out', checkpoints);
    expect(cps.code, cps.stderr).toBe(0);
    const fromExport = await cli('verify', '--events', exported, '--checkpoints', checkpoints, '--public-key', VKEY);
    expect(fromExport.code, fromExport.stdout + fromExport.stderr).toBe(0);
  }

  const values: Array<[string, Record<string, unknown>]> = [
    ['edge-case numbers', { big: 1e21, tiny: 5e-324, negZero: -0, maxSafe: 2 ** 53 - 1, pow53: 2 ** 53, frac: 0.1 + 0.2, neg: -1.5e-7, max: Number.MAX_VALUE }],
    ['unicode text', { emoji: '😀 café ñ', rtl: 'שלום', line: 'a\u2028b\u2029c', nul: 'x\u0000y', controls: '\t\n\r\b\f\u0001', quote: '"\\/' }],
    ['awkward member names', { '': 'empty', 'é': 1, 'e\u0301': 2, '😀': 3, '10': 'ten', '2': 'two', a: { 'b.c': [1, { d: null }] } }],
    ['__proto__ as a member name', JSON.parse('{"__proto__":{"polluted":true},"constructor":"c"}') as Record<string, unknown>],
    ['deep and empty values', { empty: {}, list: [], nested: [[[]]], t: true, f: false, n: null }],
  ];

  it.each(values)('an event with %s in its context is sequenced, signed, provable and verifies', async (_name, context) => {
    sdb = await scenarioDatabase(kind, dir);
    const app = await boot();
    const ids: string[] = [];
    ids.push(await app.audit.log({ action: 'ints.before', reason: 'before' }));
    ids.push(await app.audit.log({ action: 'ints.value', reason: `value \u{1F600} ${_name}`, context }));
    ids.push(await app.audit.log({ action: 'ints.after', reason: 'after' }));
    const checkpoint = await app.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(3);
    const rows = await app.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3]);
    for (const row of rows) {
      const proof = await app.audit.prove(row.id);
      expect(verifyInclusion(JSON.parse(JSON.stringify(proof)) as typeof proof, VKEY, row)).toBe(true);
    }
    await expectClean(app, 3);
  });

  it('events stored before integrity was turned on are sequenced, oldest first, into one tree', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const plain = await boot(false);
    const earlier: string[] = [];
    for (let i = 0; i < 4; i++) earlier.push(await plain.audit.log({ action: 'ints.legacy', reason: `legacy ${i}` }));
    await plain.close();
    apps.splice(apps.indexOf(plain), 1);
    const app = await boot();
    await app.audit.log({ action: 'ints.fresh', reason: 'fresh' });
    const checkpoint = await app.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(5);
    const rows = await app.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.reason)).toEqual(['legacy 0', 'legacy 1', 'legacy 2', 'legacy 3', 'fresh']);
    await expectClean(app, 5);
  });

  it('a key name other than the origin: keygen --name <keyName> verifies; a PEM is tried under the signature’s key name', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const app = await boot({ keyName: 'intS-signer' });
    for (let i = 0; i < 3; i++) await app.audit.log({ action: 'ints.named', reason: `named ${i}` });
    const checkpoint = await app.audit.checkpoint();
    expect(checkpoint.note).toContain('\u2014 intS-signer ');
    const named = independentVerifierKey('intS-signer', privateKey);
    const run = await cliProcess('verify', ...sdb.url, '--public-key', named);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const pem = join(dir, `intS-${randomUUID()}.pem`);
    writeFileSync(pem, createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string);
    const byPem = await cliProcess('verify', ...sdb.url, '--public-key', pem);
    expect(byPem.code, byPem.stdout + byPem.stderr).toBe(0);
    // Under the origin's name the key matches no signature line.
    const wrong = await cliProcess('verify', ...sdb.url, '--public-key', VKEY);
    expect(wrong.code).toBe(1);
    expect(cliProblemBriefs(wrong.stdout)).toEqual(['bad-signature seq=3 treeSize=3']);
    expect((await app.audit.verify()).ok).toBe(true);
  });

  it('two instances writing and signing at once keep one gapless tree of consistent checkpoints', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const anchor = join(dir, `intS-anchor-${randomUUID()}.txt`);
    const a = await boot({ anchor: fileAnchor(anchor) });
    const b = await boot({ anchor: fileAnchor(anchor) });
    const checkpoints: AuditCheckpoint[] = [];
    await Promise.all(
      [a, b].flatMap((app, n) => [
        (async () => {
          for (let i = 0; i < 20; i++) await app.audit.log({ action: 'ints.busy', reason: `instance ${n} event ${i}` });
        })(),
        (async () => {
          for (let i = 0; i < 5; i++) checkpoints.push(await app.audit.checkpoint());
        })(),
      ]),
    );
    const last = await a.audit.checkpoint();
    expect(last.treeSize).toBe(40);
    const rows = await a.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    for (const older of checkpoints) {
      expect(verifyConsistency(older, last, await b.audit.proveConsistency(older, last), VKEY), `${older.treeSize} -> 40`).toBe(true);
    }
    await expectClean(a, 40);
    const anchored = await readCheckpointsFile(anchor);
    const result = await b.audit.verify({ checkpoints: anchored });
    expect(problemBriefs(result.problems)).toEqual([]);
  });

  it('checkpoint() called many times at once, while writing: all resolve to consistent checkpoints', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const app = await boot();
    const writes = (async () => {
      for (let i = 0; i < 30; i++) await app.audit.log({ action: 'ints.burst', reason: `burst ${i}` });
    })();
    const signed = await Promise.all([writes.then(() => undefined), ...Array.from({ length: 6 }, () => app.audit.checkpoint())]);
    const checkpoints = signed.filter((c): c is AuditCheckpoint => c !== undefined);
    const last = await app.audit.checkpoint();
    expect(last.treeSize).toBe(30);
    for (const older of checkpoints) {
      expect(verifyConsistency(older, last, await app.audit.proveConsistency(older, last), VKEY)).toBe(true);
    }
    await expectClean(app, 30);
  });

  it('the app closed while a checkpoint is being made, then started again: one tree, no gap', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const first = await boot();
    for (let i = 0; i < 20; i++) await first.audit.log({ action: 'ints.closing', reason: `closing ${i}` });
    const pending = first.audit.checkpoint().then(
      (checkpoint) => checkpoint,
      () => undefined,
    );
    await first.close();
    apps.splice(apps.indexOf(first), 1);
    const made = await pending;
    const second = await boot();
    await second.audit.log({ action: 'ints.closing', reason: 'after restart' });
    const last = await second.audit.checkpoint();
    expect(last.treeSize).toBe(21);
    if (made) expect(verifyConsistency(made, last, await second.audit.proveConsistency(made, last), VKEY)).toBe(true);
    const rows = await second.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    await expectClean(second, 21);
  });

  it('the CLI prove prints the proof of the last stored checkpoint, which verify-proof and verifyInclusion accept', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const app = await boot();
    for (let i = 0; i < 6; i++) await app.audit.log({ action: 'ints.proved', reason: `proved ${i}` });
    await app.audit.checkpoint();
    const rows = await app.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const printed = await cliProcess('prove', rows[3]!.id, ...sdb.url);
    expect(printed.code, printed.stderr).toBe(0);
    const proof = JSON.parse(printed.stdout) as Parameters<typeof verifyInclusion>[0];
    expect(proof).toEqual(await app.audit.prove(rows[3]!.id));
    expect(verifyInclusion(proof, VKEY, rows[3]!)).toBe(true);
    const file = join(dir, `intS-${randomUUID()}.json`);
    writeFileSync(file, printed.stdout);
    const checked = await cliProcess('verify-proof', file, '--public-key', VKEY, ...sdb.url);
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    // The checkpoint as the note's text alone.
    writeFileSync(file, JSON.stringify({ ...proof, checkpoint: (proof as { checkpoint: AuditCheckpoint }).checkpoint.note }));
    const asNote = await cliProcess('verify-proof', file, '--public-key', VKEY, ...sdb.url);
    expect(asNote.code, asNote.stdout + asNote.stderr).toBe(0);
    // An event changed after the proof: verify-proof against the database fails.
    await dropAppendOnlyGuards(app.dataSource);
    const q = (name: string) => app.dataSource.driver.escape(name);
    const log = app.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
    await app.dataSource.query(`UPDATE ${log} SET ${q('reason')} = 'rewritten' WHERE ${q('seq')} = 4`);
    const stale = await cliProcess('verify-proof', file, '--public-key', VKEY, ...sdb.url);
    expect(stale.code, stale.stdout + stale.stderr).toBe(1);
    const refused = await cliProcess('prove', rows[3]!.id, ...sdb.url);
    expect(refused.code).toBe(1);
    expect(readFileSync(file, 'utf8').length).toBeGreaterThan(0);
  });
});
