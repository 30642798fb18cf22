// The viewer's event page when the latest audit_checkpoint row was altered: the event is
// shown, with its inclusion reported broken, as for any other altered tree or checkpoint row.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditViewerModule } from '../../lib/index.js';
import { appendOnlyStatements } from '../../lib/storage/append-only.js';
import { AuditCheckpointEntity } from '../../lib/storage/audit-checkpoint.entity.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ViewerAdminGuard } from '../app/viewer-admin.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/chk-viewer';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('the viewer and an altered checkpoint row on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
      imports: [AuditViewerModule.register({ path: '/audit', guard: ViewerAdminGuard })],
    });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('shows an event with its inclusion broken when the latest checkpoint row names another tree size than its note', async () => {
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
    await t.audit.checkpoint();
    const id = (await t.rows())[0]!.id;
    const before = await fetch(`${t.url}/audit/events/${id}`, { headers: { authorization: 'Bearer alice-token' } });
    expect(before.status).toBe(200);

    const runner = t.dataSource.createQueryRunner();
    try {
      for (const sql of appendOnlyStatements(runner).drop) await runner.query(sql);
      const q = (name: string) => t.dataSource.driver.escape(name);
      await runner.query(`UPDATE ${escapedTable(t.dataSource, t.dataSource.getMetadata(AuditCheckpointEntity))} SET ${q('tree_size')} = 4 WHERE ${q('tree_size')} = 3`);
    } finally {
      await runner.release();
    }

    const after = await fetch(`${t.url}/audit/events/${id}`, { headers: { authorization: 'Bearer alice-token' } });
    const body = await after.text();
    expect(after.status, body.slice(0, 400)).toBe(200);
    expect(body).toMatch(/the row was altered/);
  });
});
