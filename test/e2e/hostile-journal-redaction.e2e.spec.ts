import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { SessionGatedController, spreadUserActor } from '../app/hostile-session.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.session-secret-value';

/**
 * Redaction, "before anything is written": `audit_journal` is written too (and lives on in
 * the database's WAL/binlog and backups). A secret that never reaches `audit_log` must not
 * reach `audit_journal` either.
 */
describe.each(databases())('what audit_journal holds while a unit runs, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [SessionGatedController], audit: { actor: spreadUserActor } });
  });
  afterAll(async () => {
    t?.app.get(SessionGatedController).open();
    await t?.close();
    await db?.drop();
  });

  it('no secret of the actor in the journal (audit_log has none)', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new' }));
    const response = t.request(`/hostile/session/orders/${order.id}`, { method: 'PATCH', headers: { authorization: `Bearer ${TOKEN}` } });
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    const entries = (await journal.find()).map((row) => JSON.stringify(row.entry));
    t.app.get(SessionGatedController).open();
    expect((await response).status).toBe(200);

    const stored = JSON.stringify(await t.rows());
    expect(stored).toContain('carol@example.com');
    expect(stored).not.toContain('session-secret-value');
    expect(entries).toHaveLength(1);
    expect(entries[0]).not.toContain('session-secret-value');
  });
});
