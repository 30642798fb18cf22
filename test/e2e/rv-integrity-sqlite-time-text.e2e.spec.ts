// SQLite keeps occurred_at as the text it was given, and compares and sorts it as text.
// An administrator rewrites one signed event's time as the same instant in another
// offset (`2026-12-08 01:19:04.893+09:00` for `2026-12-07 16:19:04.893`): JavaScript reads
// the instant the leaf was hashed from, while every SQL reader — find()'s from/to, a
// report, the retention cut-off — now places the event nine hours later. Like a JSON text
// that reads otherwise in SQL than in JavaScript, that is a change of the stored row.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, dropAppendOnlyGuards } from '../support/integrity.js';
import type { TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/time-text';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe('occurred_at rewritten on SQLite as the same instant in another offset', () => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let rows: AuditLogEntity[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-time-text-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase('sqlite', join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } } });
    for (let i = 0; i < 4; i++) await t.audit.log({ action: 'order.refunded', reason: `refund ${i + 1}` });
    await t.audit.checkpoint();
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('find() no longer returns the event for its own millisecond, and verify() reports it modified', async () => {
    const log = t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map((part) => t.dataSource.driver.escape(part)).join('.');
    const at = rows[2]!.occurredAt;
    const shifted = new Date(at.getTime() + 9 * 3_600_000).toISOString().replace('T', ' ').replace('Z', '+09:00');
    await t.dataSource.query(`UPDATE ${log} SET "occurred_at" = ? WHERE "seq" = 3`, [shifted]);

    // The SQL reader's view changed: the event is gone from its own millisecond and shows up hours later.
    const own = await t.audit.find({ from: at, to: new Date(at.getTime() + 1), limit: 100 });
    expect(own.items.map((event) => event.id)).not.toContain(rows[2]!.id);
    const later = await t.audit.find({ from: new Date(at.getTime() + 3_600_000), limit: 100 });
    expect(later.items.map((event) => event.id)).toContain(rows[2]!.id);

    const result = await t.audit.verify();
    expect.soft(result.problems.map((problem) => `${problem.kind} seq=${problem.seq}`)).toEqual(['modified seq=3']);
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect.soft(run.code, run.stdout).toBe(1);
  });
});
