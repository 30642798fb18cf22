// The retention purge over rows an administrator changed with plain SQL (append-only guards
// dropped): it stops before the first event whose row no longer matches its signed leaf, so
// that no purge record is signed over the change and verify() still reports it; and it
// compares the instants of `occurred_at`, not their text (SQLite keeps text, which may carry
// an offset).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/purge-tampered';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('purge over tampered rows on %s', (kind) => {
  let db: TestDatabase | undefined;
  let dir: string;
  let t: TestApp | undefined;
  let url: string[];
  let rows: AuditLogEntity[];
  let cutoff: Date;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'purge-tampered-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  /** Four events before `cutoff` and four after it, sequenced and signed (or not, `integrity: false`); then the guards dropped. */
  async function setUp(integrity = true): Promise<void> {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: integrity ? { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } } : {},
    });
    for (let i = 0; i < 4; i++) await t.audit.log({ action: 'order.noted', reason: `old ${i + 1}`, context: { amount: 100, i } });
    await new Promise((r) => setTimeout(r, 20));
    cutoff = new Date();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 4; i < 8; i++) await t.audit.log({ action: 'order.refunded', reason: `new ${i + 1}`, context: { amount: 100, i } });
    if (integrity) {
      await t.audit.checkpoint();
      expect((await t.audit.verify()).problems).toEqual([]);
    }
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } });
    if (integrity) expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await dropAppendOnlyGuards(t.dataSource);
  }

  const q = (name: string) => t!.dataSource.driver.escape(name);
  const tbl = (name: string) => t!.dataSource.getMetadata(name).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t!.dataSource.query(text, params);

  /** What verify() and the CLI say. */
  async function verdicts(): Promise<{ api: boolean; cli: number | null }> {
    const result = await t!.audit.verify();
    const run = await cli('verify', ...url, '--public-key', VKEY);
    return { api: result.ok, cli: run.code };
  }

  /** Event 5 (`seq` 5 with integrity) rewritten as the same instant in SQLite text with a -08:00 offset (sorting before the cutoff). */
  async function offsetText(): Promise<void> {
    const log = tbl('AuditLogEntity');
    const [{ o }] = await sql(`SELECT ${q('occurred_at')} AS o FROM ${log} WHERE ${q('id')} = ?`, [rows[4]!.id]);
    const instant = new Date(`${String(o).replace(' ', 'T')}Z`);
    expect(instant.getTime()).toBeGreaterThan(cutoff.getTime());
    const local = new Date(instant.getTime() - 8 * 3_600_000).toISOString().replace('T', ' ').replace('Z', '-08:00');
    expect(local < String(o)).toBe(true);
    await sql(`UPDATE ${log} SET ${q('occurred_at')} = ? WHERE ${q('id')} = ?`, [local, rows[4]!.id]);
  }

  it('events backdated by hand stop the purge before them: no purge record over them, and verify() still reports them', async () => {
    await setUp();
    // The administrator backdates the four newest (signed) events...
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('occurred_at')} = ${p(1)} WHERE ${q('seq')} > 4`, [kind === 'sqlite' ? '2000-01-01 00:00:00.000' : new Date('2000-01-01T00:00:00.000Z')]);
    expect((await t!.audit.verify()).problems.map((x) => `${x.kind} ${x.seq}`)).toEqual(['modified 5', 'modified 6', 'modified 7', 'modified 8']);
    // ...and the purge of the events older than `cutoff` (the scheduled retention purge, or an operator) runs.
    const purged = await t!.audit.purge({ before: cutoff });
    // The four events that occurred after the cutoff (as signed) are not laundered under a purge record.
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    expect((await t!.audit.verify()).problems.map((x) => `${x.kind} ${x.seq}`)).toEqual(['modified 5', 'modified 6', 'modified 7', 'modified 8']);
    // Only events 1 to 4 occurred before the cutoff (as signed).
    expect(purged.throughSeq).toBe(4);
    expect(purged.deleted).toBe(4);
    expect(purged.stoppedAt).toEqual({ seq: 5, id: rows[4]!.id, message: expect.stringMatching(/does not hash to its signed leaf/) });
    // A later purge stops there too, without a record of its own.
    const again = await t!.audit.purge({ before: cutoff });
    expect(again).toMatchObject({ deleted: 0, stoppedAt: { seq: 5 } });
    expect(again.eventId).toBeUndefined();
  });

  it('an event changed below the cutoff stops the purge before it; the events before it go', async () => {
    await setUp();
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = 3`, ['rewritten']);
    const purged = await t!.audit.purge({ before: cutoff });
    expect({ throughSeq: purged.throughSeq, deleted: purged.deleted, stoppedAt: purged.stoppedAt?.seq }).toEqual({ throughSeq: 2, deleted: 2, stoppedAt: 3 });
    expect((await t!.audit.verify()).problems.map((x) => `${x.kind} ${x.seq}`)).toEqual(['modified 3']);
    // Restored as signed, the event no longer holds the purge back.
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('reason')} = ${p(1)} WHERE ${q('seq')} = 3`, ['old 3']);
    const resumed = await t!.audit.purge({ before: cutoff });
    expect({ throughSeq: resumed.throughSeq, deleted: resumed.deleted, stoppedAt: resumed.stoppedAt }).toEqual({ throughSeq: 4, deleted: 2, stoppedAt: undefined });
    expect(await verdicts()).toEqual({ api: true, cli: 0 });
  });

  it('an event deleted by hand stops the purge before it (no purge record hides the deletion)', async () => {
    await setUp();
    await sql(`DELETE FROM ${tbl('AuditLogEntity')} WHERE ${q('seq')} = 2`);
    const purged = await t!.audit.purge({ before: cutoff });
    expect({ throughSeq: purged.throughSeq, deleted: purged.deleted }).toEqual({ throughSeq: 1, deleted: 1 });
    expect(purged.stoppedAt).toEqual({ seq: 2, id: rows[1]!.id, message: expect.stringMatching(/row is missing/) });
    expect((await t!.audit.verify()).problems.map((x) => `${x.kind} ${x.seq}`)).toEqual(['missing 2']);
  });

  it.runIf(kind === 'sqlite')('occurred_at rewritten in another text form of the same instant does not make purge({ before }) remove an event that occurred after `before`', async () => {
    await setUp();
    await offsetText();
    // Not a change of the event (same instant): verify() is right to say nothing.
    expect((await t!.audit.verify()).ok).toBe(true);
    const purged = await t!.audit.purge({ before: cutoff });
    // Event 5 occurred after the cutoff: the purge stops at 4.
    expect({ throughSeq: purged.throughSeq, deleted: purged.deleted }).toEqual({ throughSeq: 4, deleted: 4 });
    expect(purged.stoppedAt).toBeUndefined();
    expect(await verdicts()).toEqual({ api: true, cli: 0 });
  });

  it.runIf(kind === 'sqlite')('without integrity, occurred_at in another text form of the same instant is compared as that instant', async () => {
    await setUp(false);
    await offsetText();
    // And an old event written with a +09:00 offset (its text sorts after the cutoff).
    const log = tbl('AuditLogEntity');
    const [{ o }] = await sql(`SELECT ${q('occurred_at')} AS o FROM ${log} WHERE ${q('id')} = ?`, [rows[3]!.id]);
    const instant = new Date(`${String(o).replace(' ', 'T')}Z`);
    const ahead = new Date(instant.getTime() + 9 * 3_600_000).toISOString().replace('T', ' ').replace('Z', '+09:00');
    await sql(`UPDATE ${log} SET ${q('occurred_at')} = ? WHERE ${q('id')} = ?`, [ahead, rows[3]!.id]);
    const purged = await t!.audit.purge({ before: cutoff });
    expect(purged.deleted).toBe(4);
    const left = await t!.dataSource.getRepository(AuditLogEntity).find({ where: { action: 'order.refunded' } });
    expect(left.map((r) => r.id).sort()).toEqual(rows.slice(4).map((r) => r.id).sort());
    expect(await t!.dataSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(0);
  });
});
