// The integrator catching up with a backlog on PostgreSQL when the table's statistics are
// older than the backlog (analyzed while every event had its seq; autovacuum not yet come
// round): its seq UPDATE must stay a join the planner can do in one pass per batch. A build
// that turned hash and merge joins off in the integrator's transaction left only a nested
// loop comparing every event without a seq with the whole batch: 4.6 s per batch at this
// backlog, and with a statement_timeout nothing was sequenced at all.
import { generateKeyPairSync } from 'node:crypto';
import pg from 'pg';
import { IsNull, Not } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { storeEventsAt } from '../support/partitions.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: 'audit.example.test/backlog', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };
const SEQUENCED = 20_000;
const BACKLOG = 16_000;

describe.runIf(databases().includes('postgres'))('integrator: a backlog with statistics older than it (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = db = undefined;
  });

  it('with a 2 s statement_timeout on the application role, a 16,000-event backlog is sequenced', async () => {
    db = await createTestDatabase('postgres');
    withPostgresSettings(db, '-c statement_timeout=2000');
    t = await createTestApp({ db, adapter: 'express', audit: INTEGRITY });
    const admin = new pg.Client(POSTGRES);
    await admin.connect();
    const table = `"${(db.options as { schema: string }).schema}"."audit_log"`;
    try {
      // Autovacuum off on this table only, so that its next round does not refresh the statistics mid-test.
      await admin.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);
      for (let k = 0; k < SEQUENCED / 4000; k++) await storeEventsAt(t, new Date(Date.now() - 7_200_000 + k * 10_000), 4000, `s${k}`);
      await t.audit.checkpoint();
      await admin.query(`ANALYZE ${table}`); // no event without a seq, as far as the planner knows from now on
    } finally {
      await admin.end();
    }
    for (let k = 0; k < BACKLOG / 4000; k++) await storeEventsAt(t, new Date(Date.now() - 3_600_000 + k * 10_000), 4000, `b${k}`);

    const checkpoint = await t.audit.checkpoint();

    expect(checkpoint.treeSize).toBe(SEQUENCED + BACKLOG);
    expect(await t.dataSource.getRepository(AuditLogEntity).countBy({ seq: Not(IsNull()) })).toBe(SEQUENCED + BACKLOG);
  }, 300_000);
});
