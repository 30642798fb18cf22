// A database administrator (triggers dropped) sets the seq of a sequenced event back to
// NULL, changing its content or not. The integrator takes the row as a new event: a second
// leaf naming the same event id, signed over at the next checkpoint. verify() and the CLI
// must still tell that the event signed at its old seq is in the log, changed (modified) or
// only moved (reordered); prove() must not hand out a proof of the changed content.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, checkInclusion, fileAnchor, readCheckpointsFile, type AuditIntegrityProblem } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProblemBriefs, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/reseq';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('a sequenced event whose seq was set back to NULL, on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let anchorFile: string;
  let rows: AuditLogEntity[];
  /** `e<seq>` for the id of each event, by the seq it was signed at. */
  let names: Map<string, string>;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-reseq-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    anchorFile = join(dir, `anchor-${randomUUID()}.txt`);
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 }, anchor: fileAnchor(anchorFile) } },
    });
    // 12 events, checkpoints at 4, 8 and 12.
    for (let batch = 0; batch < 3; batch++) {
      for (let i = 0; i < 4; i++) await t.audit.log({ action: 'order.refunded', reason: `refund ${batch * 4 + i + 1}`, target: { type: 'order', id: String(batch * 4 + i + 1) } });
      await t.audit.checkpoint();
    }
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    names = new Map(rows.map((row) => [row.id, `e${row.seq}`]));
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const log = () => t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');

  /** What verify() (with the anchored checkpoints), the CLI against the database, and the CLI against an export report. */
  async function reports(): Promise<{ api: string[]; cli: string[]; export: string[] }> {
    const result = await t.audit.verify({ checkpoints: await readCheckpointsFile(anchorFile) });
    const run = await cli('verify', ...url, '--public-key', VKEY, '--checkpoints', anchorFile);
    const file = join(dir, `${randomUUID()}.jsonl`);
    expect((await cli('export', ...url, '--out', file)).code).toBe(0);
    const offline = await cli('verify', '--events', file, '--checkpoints', anchorFile, '--public-key', VKEY);
    return {
      api: problemBriefs(result.problems as AuditIntegrityProblem[], names),
      cli: cliProblemBriefs(run.stdout, names),
      export: cliProblemBriefs(offline.stdout, names),
    };
  }

  it('changed while its seq was NULL: the integrator signs it again at seq 13; verify reports it modified, and prove() gives no proof of the changed row', async () => {
    const victim = rows[5]!;
    await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = NULL, ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, ['refund 6 (never paid out)', 6]);
    await t.audit.checkpoint(); // the next pass, as the background integrator makes it
    const now = (await t.dataSource.getRepository(AuditLogEntity).findOneBy({ id: victim.id }))!;
    expect(now.seq).toBe(13);
    expect(now.reason).toBe('refund 6 (never paid out)');

    // What the auditor must see: the event signed as `refund 6` is in the log, with another content.
    const seen = await reports();
    expect.soft(seen.api, JSON.stringify(seen)).toContainEqual(expect.stringMatching(/^modified seq=(6|13) id=e6$/));
    expect.soft(seen.cli).toContainEqual(expect.stringMatching(/^modified seq=(6|13) id=e6$/));
    // A signed proof of the rewritten row is what the tampering must not earn.
    const proved = await t.audit.prove(victim.id).then(
      (proof) => checkInclusion(proof, VKEY, now),
      (error: Error) => ({ ok: false, reason: error.message }),
    );
    expect.soft(proved, 'prove() of the rewritten row').toMatchObject({ ok: false });
  });

  it('only its seq set to NULL: the integrator signs it again at seq 13; verify reports it moved (reordered at 13), not only missing at 6', async () => {
    await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = NULL WHERE ${q('seq')} = ${p(1)}`, [6]);
    await t.audit.checkpoint();
    const seen = await reports();
    expect.soft(seen.api, JSON.stringify(seen)).toEqual(['reordered seq=13 id=e6']);
    expect.soft(seen.cli).toEqual(['reordered seq=13 id=e6']);
  });
});
