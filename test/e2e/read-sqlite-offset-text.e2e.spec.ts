// SQLite keeps occurred_at as the text it was given. An administrator rewrites one signed
// event's time as the same instant in another offset (`2026-12-08 01:19:04.893+09:00` for
// `2026-12-07 16:19:04.893`): not a change of the event (verify() says nothing, as
// integrity-purge-tampered expects, and the purge compares instants), so every reader must
// still place the event at its instant: find()'s from/to compare instants, not the text, or the
// event would drop out of its own millisecond and show up nine hours later, unreported.
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

  it('verify() says nothing, and find() still returns the event for its own millisecond, not hours later', async () => {
    const log = t.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map((part) => t.dataSource.driver.escape(part)).join('.');
    const at = rows[2]!.occurredAt;
    const shifted = new Date(at.getTime() + 9 * 3_600_000).toISOString().replace('T', ' ').replace('Z', '+09:00');
    await t.dataSource.query(`UPDATE ${log} SET "occurred_at" = ? WHERE "seq" = 3`, [shifted]);

    // Not a change of the event: verify() says nothing.
    expect((await t.audit.verify()).ok).toBe(true);
    expect((await cli('verify', ...url, '--public-key', VKEY)).code).toBe(0);

    // find() must still place the event at its instant, as find() itself returns it.
    const own = await t.audit.find({ from: at, to: new Date(at.getTime() + 1), limit: 100 });
    expect.soft(own.items.map((event) => event.id)).toContain(rows[2]!.id);
    const later = await t.audit.find({ from: new Date(at.getTime() + 3_600_000), limit: 100 });
    expect.soft(later.items.map((event) => [event.id === rows[2]!.id, event.occurredAt.toISOString()])).toEqual([]);
  });
});
