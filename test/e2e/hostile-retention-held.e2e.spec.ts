// Attacks on the retention purge that hold: an export checked without the purge record,
// a purge from an @Audited handler (one purge event, the request's actor), and a purge
// under an `entityPrefix` with the append-only guards installed.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditLogEntity, AuditService, fileAnchor } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { TokenGuard } from '../app/token.guard.js';
import { cli } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);
const integrity = { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } };

@Controller('retention')
@UseGuards(TokenGuard)
class PurgeController {
  constructor(private readonly audit: AuditService) {}

  @Post('purge')
  @Audited('retention.requested')
  async purge(@Body() body: { before: string }): Promise<{ deleted: number; eventId?: string }> {
    const { deleted, eventId } = await this.audit.purge({ before: body.before });
    return eventId === undefined ? { deleted } : { deleted, eventId };
  }
}

describe.each(databases())('retention attacks that hold on %s', (kind) => {
  let dir: string;
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-hostile-retention-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  async function oldAndNew(app: TestApp, old: number, recent: number): Promise<Date> {
    for (let i = 0; i < old; i++) await app.audit.log({ action: 'order.noted', reason: `old ${i + 1}` });
    await sleep(15);
    const before = new Date();
    await sleep(15);
    for (let i = 0; i < recent; i++) await app.audit.log({ action: 'order.noted', reason: `new ${i + 1}` });
    return before;
  }

  it('an export whose checkpoints file lacks the purge record does not verify', async () => {
    db = await createTestDatabase(kind);
    const anchorFile = join(dir, `anchor-${randomUUID()}.txt`);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { ...integrity, anchor: fileAnchor(anchorFile) } } });
    const before = await oldAndNew(t, 5, 3);
    await t.audit.checkpoint();
    await t.audit.purge({ before });
    await t.audit.checkpoint();
    const exported = join(dir, `export-${randomUUID()}.jsonl`);
    await pipeline(t.audit.export({}, { format: 'jsonl' }), createWriteStream(exported));

    const withRecord = await cli('verify', '--events', exported, '--checkpoints', anchorFile, '--public-key', VKEY);
    expect(withRecord.code, withRecord.stdout + withRecord.stderr).toBe(0);
    // The same file without the purge record (notes are separated by a blank line).
    const notes = readFileSync(anchorFile, 'utf8').split(/\n\n(?=\S)/);
    const stripped = join(dir, `stripped-${randomUUID()}.txt`);
    writeFileSync(stripped, notes.filter((note) => !note.includes('\npurge ')).join('\n\n'));
    expect(readFileSync(stripped, 'utf8')).not.toMatch(/\npurge /);
    const without = await cli('verify', '--events', exported, '--checkpoints', stripped, '--public-key', VKEY);
    expect(without.code, without.stdout + without.stderr).toBe(1);
    expect(without.stdout).toMatch(/missing seq=1\b/);
  }, 120_000);

  it('a purge from an @Audited handler is one purge event, by the request\'s actor, and verifies', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity }, controllers: [PurgeController] });
    const before = await oldAndNew(t, 4, 2);
    const response = await t.request('/retention/purge', { method: 'POST', headers: { authorization: 'Bearer alice-token' }, json: { before: before.toISOString() } });
    expect(response.status).toBe(201);
    const body = (await response.json()) as { deleted: number; eventId: string };
    expect(body.deleted).toBe(4);
    const events = t.dataSource.getRepository(AuditLogEntity);
    const purged = await events.find({ where: { action: 'audit.purged' } });
    expect(purged.map((row) => [row.id, row.actorType, row.actorId])).toEqual([[body.eventId, 'user', '1']]);
    expect(await events.countBy({ action: 'retention.requested' })).toBe(1);
    await t.audit.checkpoint();
    const verified = await t.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, purgedThrough: 4 });
  }, 60_000);

  it('purges under an entityPrefix with the append-only guards installed', async () => {
    const created = await createTestDatabase(kind);
    db = created;
    t = await createTestApp({ db: { ...created, options: { ...created.options, entityPrefix: 'acme_' } }, adapter: 'express', audit: { integrity } });
    expect(t.dataSource.getMetadata(AuditLogEntity).tableName).toBe('acme_audit_log');
    const before = await oldAndNew(t, 6, 2);
    const result = await t.audit.purge({ before, batchSize: 4 });
    expect(result).toMatchObject({ deleted: 6, throughSeq: 6 });
    const table = t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map((name) => t!.dataSource.driver.escape(name)).join('.');
    await expect(t.dataSource.query(`DELETE FROM ${table}`)).rejects.toThrow(/append-only/);
    expect((await t.audit.verify()).ok).toBe(true);
  }, 60_000);
});
