// Acceptance scenarios of tamper evidence across time zones: the application runs in one
// zone, the auditor's command line in others; an untouched log verifies everywhere, and
// proofs check. Also verify() running while the application writes and signs.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, verifyInclusion } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cliProcessWith, problemBriefs } from '../support/integrity.js';
import { independentVerifierKey, scenarioDatabase, type ScenarioDatabase } from '../support/integrity-scenario.js';
import { databases } from '../support/test-database.js';

const ORIGIN = 'intS.example.test/zones';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = independentVerifierKey(ORIGIN, privateKey);
const ZONES = ['UTC', 'Pacific/Chatham', 'America/St_Johns', 'Asia/Kolkata'];
const ODD_ZONES = ['Pacific/Chatham', 'America/St_Johns'];

describe.each(databases())('scenario: the application and the auditor in other time zones, on %s', (kind) => {
  let dir: string;
  let sdb: ScenarioDatabase;
  let t: TestApp | undefined;
  const zone = process.env['TZ'];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intS-scenario-zones-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await t?.close();
    t = undefined;
    await sdb?.db.drop();
    if (zone === undefined) delete process.env['TZ'];
    else process.env['TZ'] = zone;
  });

  it.each(['Pacific/Chatham', 'America/Los_Angeles'])('an application in %s: the CLI in each zone verifies, exports and checks proofs', async (appZone) => {
    process.env['TZ'] = appZone;
    sdb = await scenarioDatabase(kind, dir);
    t = await createTestApp({
      db: sdb.db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
    for (let i = 0; i < 5; i++) await t.audit.log({ action: 'ints.zoned', reason: `zoned ${i}` });
    await t.audit.checkpoint();
    expect(problemBriefs((await t.audit.verify()).problems)).toEqual([]);
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    const proof = await t.audit.prove(rows[2]!.id);
    expect(verifyInclusion(proof, VKEY, rows[2]!)).toBe(true);
    const proofFile = join(dir, `intS-${randomUUID()}.json`);
    writeFileSync(proofFile, JSON.stringify(proof));
    for (const cliZone of ZONES) {
      const env = { TZ: cliZone };
      const run = await cliProcessWith({ env }, 'verify', ...sdb.url, '--public-key', VKEY);
      expect(run.code, `${cliZone}: ${run.stdout}${run.stderr}`).toBe(0);
      // Proofs and exports in the zones of odd offsets (+12:45 and -3:30).
      if (!ODD_ZONES.includes(cliZone)) continue;
      const checked = await cliProcessWith({ env }, 'verify-proof', proofFile, '--public-key', VKEY, ...sdb.url);
      expect(checked.code, `${cliZone}: ${checked.stdout}${checked.stderr}`).toBe(0);
      const exported = join(dir, `intS-${randomUUID()}.jsonl`);
      expect((await cliProcessWith({ env }, 'export', ...sdb.url, '--out', exported)).code).toBe(0);
      const checkpoints = join(dir, `intS-${randomUUID()}.txt`);
      expect((await cliProcessWith({ env }, 'checkpoints', ...sdb.url, '--out', checkpoints)).code).toBe(0);
      const fromExport = await cliProcessWith({}, 'verify', '--events', exported, '--checkpoints', checkpoints, '--public-key', VKEY);
      expect(fromExport.code, `${cliZone}: ${fromExport.stdout}${fromExport.stderr}`).toBe(0);
    }
  }, 120_000);

  it('verify() and the CLI running while the application writes and signs report no problem', async () => {
    sdb = await scenarioDatabase(kind, dir);
    const app = await createTestApp({
      db: sdb.db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 50, checkpointEvery: { events: 7, ms: 100 } } },
    });
    t = app;
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 150 && writing; i++) {
        await app.audit.log({ action: 'ints.live', reason: `live ${i}` });
        if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const results: string[][] = [];
    const cliRuns: Array<{ code: number | null; out: string }> = [];
    try {
      for (let round = 0; round < 4; round++) {
        const [result, run] = await Promise.all([app.audit.verify(), cliProcessWith({}, 'verify', ...sdb.url, '--public-key', VKEY)]);
        results.push(problemBriefs(result.problems));
        cliRuns.push({ code: run.code, out: run.stdout + run.stderr });
      }
    } finally {
      writing = false;
      await writer;
    }
    expect(results).toEqual(results.map(() => []));
    for (const run of cliRuns) expect(run.code, run.out).toBe(0);
    await app.audit.checkpoint();
    expect((await app.audit.verify()).ok).toBe(true);
  }, 120_000);
});
