// A database administrator (append-only triggers dropped) sets the seq of a sequenced event
// back to NULL, changing its content or not. The unique index on audit_tree's event_id
// keeps the integrator from taking the row in a second time under a new seq (which would
// sign whatever it holds now): it stops and says which event and leaf. verify() and the
// CLI name the event signed at its old seq, changed (`modified`) or only moved
// (`reordered`) — also when the administrator dropped that index too and the integrator
// did sequence it again.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditTreeEntity, checkInclusion, fileAnchor, readCheckpointsFile, type AuditIntegrityProblem } from '../../lib/index.js';
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

  /** Sets event 6's seq back to NULL, with its reason changed when `reason` is given. */
  async function setBack(reason?: string): Promise<void> {
    if (reason === undefined) await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = NULL WHERE ${q('seq')} = ${p(1)}`, [6]);
    else await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = NULL, ${q('reason')} = ${p(1)} WHERE ${q('seq')} = ${p(2)}`, [reason, 6]);
  }

  const dropLeafIndex = async (): Promise<void> => {
    const tree = t.dataSource.getMetadata(AuditTreeEntity).tablePath.split('.').map(q).join('.');
    const index = q('idx_audit_tree_event');
    if (kind === 'mariadb') await t.dataSource.query(`DROP INDEX ${index} ON ${tree}`);
    else if (kind === 'postgres') await t.dataSource.query(`DROP INDEX ${q(String(t.dataSource.driver.schema))}.${index}`);
    else await t.dataSource.query(`DROP INDEX ${index}`);
  };

  it('changed while its seq was NULL: the integrator stops on it, naming the event and its leaf; verify reports it modified at 6; prove() gives no proof', async () => {
    const victim = rows[5]!;
    await setBack('refund 6 (never paid out)');
    await expect(t.audit.checkpoint()).rejects.toThrow(`event ${victim.id} has no seq, but leaf 5 of the tree (seq 6) names it: its seq was set back to NULL outside the integrator`);
    // Nothing more is sequenced meanwhile.
    await t.audit.log({ action: 'order.refunded', reason: 'refund 13', target: { type: 'order', id: '13' } });
    await expect(t.audit.checkpoint()).rejects.toThrow(/set back to NULL/);
    const now = (await t.dataSource.getRepository(AuditLogEntity).findOneBy({ id: victim.id }))!;
    expect(now).toMatchObject({ seq: null, reason: 'refund 6 (never paid out)' });

    const seen = await reports();
    expect(seen.api, JSON.stringify(seen)).toEqual(['modified seq=6 id=e6']);
    expect(seen.cli).toEqual(['modified seq=6 id=e6']);
    // The export has no tree to say whose the leaf was: event 6 is missing from it.
    expect(seen.export).toEqual(['missing seq=6']);
    await expect(t.audit.prove(victim.id)).rejects.toThrow();
  });

  it('only its seq set to NULL: verify reports it moved (reordered at 6); once its seq is put back, sequencing goes on and verify is ok', async () => {
    const victim = rows[5]!;
    await setBack();
    await expect(t.audit.checkpoint()).rejects.toThrow(/leaf 5 of the tree \(seq 6\) names it/);
    const seen = await reports();
    expect(seen.api, JSON.stringify(seen)).toEqual(['reordered seq=6 id=e6']);
    expect(seen.cli).toEqual(['reordered seq=6 id=e6']);

    await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = ${p(1)} WHERE ${q('id')} = ${p(2)}`, [6, victim.id]);
    await t.audit.log({ action: 'order.refunded', reason: 'refund 13', target: { type: 'order', id: '13' } });
    expect((await t.audit.checkpoint()).treeSize).toBe(13);
    expect(await t.audit.verify({ checkpoints: await readCheckpointsFile(anchorFile) })).toMatchObject({ ok: true, treeSize: 13, problems: [] });
    expect(checkInclusion(await t.audit.prove(victim.id), VKEY, rows[5]!)).toMatchObject({ ok: true });
  });

  it('with the leaf index dropped too, changed: the integrator signs it again at seq 13, and verify reports it modified there', async () => {
    await dropLeafIndex();
    await setBack('refund 6 (never paid out)');
    await t.audit.checkpoint();
    const now = (await t.dataSource.getRepository(AuditLogEntity).findOneBy({ id: rows[5]!.id }))!;
    expect(now.seq).toBe(13);
    const seen = await reports();
    expect(seen.api, JSON.stringify(seen)).toEqual(['modified seq=13 id=e6']);
    expect(seen.cli).toEqual(['modified seq=13 id=e6']);
  });

  it('with the leaf index dropped too, only moved: verify reports it reordered at 13', async () => {
    await dropLeafIndex();
    await setBack();
    await t.audit.checkpoint();
    const seen = await reports();
    expect(seen.api, JSON.stringify(seen)).toEqual(['reordered seq=13 id=e6']);
    expect(seen.cli).toEqual(['reordered seq=13 id=e6']);
  });
});
