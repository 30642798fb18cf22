// The viewer's integrity status against a database administrator: a row changed after it
// was sequenced, or the checkpoint re-signed by a key the application does not trust, is shown
// in red with the reason, never as verified; an untouched event is verified.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditLogEntity, AuditViewerModule } from '../../lib/index.js';
import { createSigner, formatCheckpoint, signNote } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ALICE = { authorization: 'Bearer alice-token' };
const ORIGIN = 'audit.test/hostile-viewer';
const { privateKey } = generateKeyPairSync('ed25519');
const { privateKey: otherKey } = generateKeyPairSync('ed25519');

describe.each(databases())('the viewer\'s integrity status under tampering on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let rows: AuditLogEntity[];

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
      imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })],
    });
    for (let i = 1; i <= 4; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
    await t.audit.checkpoint();
    rows = (await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } })).filter((row) => row.action === 'order.noted');
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4]);
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const status = async (id: string): Promise<string> => {
    const page = await (await t.request(`/audit/events/${id}`, { headers: ALICE })).text();
    return /<p class="(proof-(?:ok|bad))">([^<]*)<\/p>/.exec(page)?.slice(1).join(': ') ?? 'no status';
  };

  it('a row changed after it was sequenced is shown as not verifying, with the changed value', async () => {
    expect(await status(rows[1]!.id)).toBe('proof-ok: Inclusion proof verified against the signed checkpoint.');
    await t.dataSource.getRepository(AuditLogEntity).update({ id: rows[1]!.id }, { reason: 'note 2, rewritten' });
    const page = await (await t.request(`/audit/events/${rows[1]!.id}`, { headers: ALICE })).text();
    expect(page).toContain('note 2, rewritten');
    expect(await status(rows[1]!.id)).toMatch(/^proof-bad: No valid proof: .*changed after it was sequenced/);
    expect(await status(rows[2]!.id)).toBe('proof-ok: Inclusion proof verified against the signed checkpoint.');
  });

  it('the latest checkpoint re-signed by a key the application does not trust is not taken as verified', async () => {
    const latest = (await t.dataSource.getRepository(AuditCheckpointEntity).find({ order: { treeSize: 'DESC' }, take: 1 }))[0]!;
    // The same tree, re-signed by another key under the same origin.
    const forged = signNote(formatCheckpoint({ origin: ORIGIN, treeSize: latest.treeSize, rootHash: Buffer.from(latest.rootHash, 'hex') }), createSigner(ORIGIN, otherKey));
    await t.dataSource.getRepository(AuditCheckpointEntity).update({ treeSize: latest.treeSize }, { note: forged });
    expect(await status(rows[0]!.id)).toMatch(/^proof-bad: /);
  });
});
