// The retention purge: old events removed in batches through the append-only guards'
// one way out, recorded as an `audit.purged` event; with integrity on, a prefix of the
// sequence under a signed purge record, after which verify() — and the CLI, on the
// database or on an export plus the anchored checkpoints — still says ok, and still finds
// what an administrator removes or forges afterwards.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditSubjectEntity, fileAnchor, InvalidAuditQueryError, readCheckpointsFile } from '../../lib/index.js';
import { createSigner, signNote, verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { formatPurgeRecord } from '../../lib/integrity/purge-record.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';
import { logNotes } from '../support/retention.js';

const ORIGIN = 'audit.example.test/retention';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('retention purge on %s', (kind) => {
  let dir: string;
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  let url: string[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-retention-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  async function database(): Promise<TestDatabase> {
    const created = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`));
    url = created.url;
    return created.db;
  }

  const events = () => t!.dataSource.getRepository(AuditLogEntity);
  const q = (name: string) => t!.dataSource.driver.escape(name);
  const table = () => t!.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');


  /** Events logged before and after a cut-off (the clock moves on between them). */
  async function oldAndNew(old: number, recent: number): Promise<{ before: Date; oldIds: string[]; newIds: string[] }> {
    const oldIds = await logNotes(t!.audit, old, 'old');
    await sleep(15);
    const before = new Date();
    await sleep(15);
    const newIds = await logNotes(t!.audit, recent, 'new');
    return { before, oldIds, newIds };
  }

  describe('with integrity', () => {
    let anchorFile: string;

    async function start(): Promise<void> {
      db = await database();
      anchorFile = join(dir, `anchor-${randomUUID()}.txt`);
      t = await createTestApp({
        db,
        adapter: 'express',
        audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 }, anchor: fileAnchor(anchorFile) } },
      });
    }

    it('removes the oldest events as a prefix of the sequence under a signed record; verify stays ok, by the API, the CLI and an export', async () => {
      await start();
      const { before, oldIds, newIds } = await oldAndNew(10, 6);
      await t!.audit.checkpoint();

      const result = await t!.audit.purge({ before, batchSize: 3 });
      expect(result).toMatchObject({ deleted: 10, throughSeq: 10, before });
      expect(result.record).toMatch(/^audit\.example\.test\/retention\n10\n[A-Za-z0-9+/=]{44}\npurge /);

      const left = await events().find({ order: { seq: 'ASC' } });
      expect(left.filter((row) => oldIds.includes(row.id))).toEqual([]);
      expect(left.filter((row) => newIds.includes(row.id)).map((row) => row.seq)).toEqual([11, 12, 13, 14, 15, 16]);
      const purged = left.find((row) => row.action === 'audit.purged')!;
      expect(purged.id).toBe(result.eventId);
      expect(purged.actorType).toBe('system');
      expect(purged.context).toMatchObject({ before: before.toISOString(), fromSeq: 1, throughSeq: 10, events: 10, note: result.record });

      // The audit_tree rows stay, so every checkpoint is still checked.
      const verified = await t!.audit.verify();
      expect(verified.problems).toEqual([]);
      expect(verified).toMatchObject({ ok: true, purgedThrough: 10 });

      // The purge event is sequenced like any other; the next checkpoint covers it.
      await logNotes(t!.audit, 2, 'later');
      await t!.audit.checkpoint();
      expect((await t!.audit.verify()).ok).toBe(true);

      // The CLI on the database, then on an export plus the anchor's file (which got the record).
      const onDatabase = await cli('verify', ...url, '--public-key', VKEY);
      expect(onDatabase.code, onDatabase.stdout + onDatabase.stderr).toBe(0);
      expect(onDatabase.stdout).toMatch(/OK: .*events 1 to 10 were purged/);
      expect((await readCheckpointsFile(anchorFile)).some((note) => note.includes('\npurge '))).toBe(true);
      const exported = join(dir, `export-${randomUUID()}.jsonl`);
      await pipeline(t!.audit.export({}, { format: 'jsonl' }), createWriteStream(exported));
      const onExport = await cli('verify', '--events', exported, '--checkpoints', anchorFile, '--public-key', VKEY);
      expect(onExport.code, onExport.stdout + onExport.stderr).toBe(0);
      expect(onExport.stdout).toMatch(/OK: .*events 1 to 10 were purged/);

      // Nothing more to purge: no second record.
      expect(await t!.audit.purge({ before })).toMatchObject({ deleted: 0 });
      expect(await events().countBy({ action: 'audit.purged' })).toBe(1);

      // The guards still refuse a plain DELETE.
      await expect(t!.dataSource.query(`DELETE FROM ${table()} WHERE ${q('seq')} = ${p(1)}`, [12])).rejects.toThrow(/append-only/);
    });

    it('after a purge, a row removed or a purge record forged by an administrator is still found', async () => {
      await start();
      const { before } = await oldAndNew(4, 4);
      await t!.audit.checkpoint();
      await t!.audit.purge({ before });
      expect((await t!.audit.verify()).ok).toBe(true);
      await dropAppendOnlyGuards(t!.dataSource);

      // Events 5 and 6 deleted, and "explained" by a purge record signed with another key.
      const rows = await events().find({ order: { seq: 'ASC' } });
      const [fifth, sixth] = rows.filter((row) => row.seq === 5 || row.seq === 6);
      await t!.dataSource.query(`DELETE FROM ${table()} WHERE ${q('seq')} IN (${p(1)}, ${p(2)})`, [5, 6]);
      const otherKey = generateKeyPairSync('ed25519').privateKey;
      const forged = signNote(
        formatPurgeRecord(ORIGIN, { treeSize: 6, before: new Date().toISOString(), frontier: [Buffer.alloc(32, 1), Buffer.alloc(32, 2)] }),
        createSigner(ORIGIN, otherKey),
      );
      await t!.audit.log({ action: 'audit.purged', context: { throughSeq: 6, note: forged } });

      const result = await t!.audit.verify();
      expect(result.ok).toBe(false);
      expect(result.problems.map((problem) => [problem.kind, problem.seq ?? problem.treeSize, problem.id])).toEqual([
        ['missing', 5, fifth!.id],
        ['bad-signature', 6, undefined],
        ['missing', 6, sixth!.id],
      ]);
      expect(result.purgedThrough).toBe(4);
    });

    it('an export holding events the purge removed since, or missing ones after it, is judged from the record', async () => {
      await start();
      const { before } = await oldAndNew(5, 3);
      await t!.audit.checkpoint();
      // An export taken before the purge still holds events 1 to 5.
      const early = join(dir, `early-${randomUUID()}.jsonl`);
      await pipeline(t!.audit.export({}, { format: 'jsonl' }), createWriteStream(early));
      await t!.audit.purge({ before });
      await t!.audit.checkpoint();
      const checkpoints = join(dir, `checkpoints-${randomUUID()}.txt`);
      const dumped = await cli('checkpoints', ...url, '--out', checkpoints);
      expect(dumped.code, dumped.stderr).toBe(0);
      const onEarly = await cli('verify', '--events', early, '--checkpoints', checkpoints, '--public-key', VKEY);
      // The early export ends before the purge event and the last checkpoint: those are missing from it.
      expect(onEarly.stdout).not.toMatch(/seq=[1-5]\b/);
      expect(onEarly.stdout).toMatch(/truncated seq=9/);

      // A later export with event 6 cut out: missing, even though the record starts the log at 5.
      const late = join(dir, `late-${randomUUID()}.jsonl`);
      await pipeline(t!.audit.export({}, { format: 'jsonl' }), createWriteStream(late));
      const lines = readFileSync(late, 'utf8').split('\n').filter((line) => !line.includes('"seq":6,') && !line.endsWith('"seq":6}'));
      writeFileSync(late, lines.join('\n'));
      const onLate = await cli('verify', '--events', late, '--checkpoints', checkpoints, '--public-key', VKEY);
      expect(onLate.code).toBe(1);
      expect(onLate.stdout).toMatch(/^missing seq=6\b/m);
    });
  });

  describe('without integrity', () => {
    it('removes the events older than the cut-off and their subject rows, and records the purge', async () => {
      db = await database();
      t = await createTestApp({ db, adapter: 'express' });
      const order = await t.dataSource.getRepository(Order).save({ total: 100, status: 'new' });
      // An event whose changes touch the order without naming it as target: a subject row.
      await t.audit.log({
        action: 'invoice.merged',
        target: { type: 'invoice', id: '9' },
        changes: [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { total: { from: 100, to: 200 } } }],
      });
      const { before, newIds } = await oldAndNew(7, 2);
      const subjectsBefore = await t.dataSource.getRepository(AuditSubjectEntity).count();
      expect(subjectsBefore).toBeGreaterThan(0);

      const result = await t.audit.purge({ before: before.toISOString(), batchSize: 2 });
      expect(result.deleted).toBe(9); // the order's creation, the merge and the 7 old events
      const left = await events().find();
      expect(left.map((row) => row.id).sort()).toEqual([...newIds, result.eventId!].sort());
      expect(left.find((row) => row.id === result.eventId)?.context).toEqual({ before: before.toISOString(), events: result.deleted });
      expect(await t.dataSource.getRepository(AuditSubjectEntity).count({ where: { subjectId: String(order.id) } })).toBe(0);
      expect(await t.audit.history({ type: 'Order', id: order.id })).toEqual([]);
    });

    it('runs on the retention schedule as the system', async () => {
      db = await database();
      t = await createTestApp({ db, adapter: 'express', audit: { retention: { maxAge: '1s', schedule: 200 } } });
      const [first] = await logNotes(t!.audit, 3, 'kept-briefly');
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && (await events().countBy({ id: first! })) > 0) await sleep(100);
      expect(await events().countBy({ id: first! })).toBe(0);
      const recorded = await events().find({ where: { action: 'audit.purged' } });
      expect(recorded.length).toBeGreaterThan(0);
      expect(recorded[0]).toMatchObject({ actorType: 'system', actorId: 'retention' });
    });

    it('refuses bad options with the option named, removing nothing', async () => {
      db = await database();
      t = await createTestApp({ db, adapter: 'express' });
      await logNotes(t!.audit, 2, 'kept');
      const bad: Array<[unknown, RegExp]> = [
        [{}, /before.*required/],
        [{ before: 'yesterday' }, /before.*not a valid date/],
        [{ before: new Date(Date.now() + 60_000) }, /before.*future/],
        [{ before: new Date(), batchSize: 0 }, /batchSize.*whole number/],
        [{ before: new Date(), olderThan: 3 }, /olderThan.*not an option/],
        [null, /options.*object/],
      ];
      for (const [options, message] of bad) {
        const attempt = t.audit.purge(options as never);
        await expect(attempt).rejects.toThrow(InvalidAuditQueryError);
        await expect(attempt).rejects.toThrow(message);
      }
      expect(await events().count()).toBe(2);
    });
  });
});
