// Second hostile review of monthly partitions of audit_log (PostgreSQL), after the fixes of
// the first (ee7528f, c6d76cf). "Defect" marks a failing reproduction (it.fails), "held" an
// attack that failed, "note" a measurement.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditMigrations, partitionAuditLog, PartitionAuditLogMonthly1767225600000, unpartitionAuditLog, type AuditModuleOptions } from '../../lib/index.js';
import { uuidv7 } from '../../lib/events/uuid-v7.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

const PARTITIONED = [...AuditMigrations, PartitionAuditLogMonthly1767225600000];

function monthAgo(months: number, day = 10): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, day, 12, 0, 0, 0));
}
const monthStartAgo = (months: number): Date => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, 1));
};

describe.runIf(databases().includes('postgres'))('hostile 2: monthly partitions of audit_log (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  const apps: TestApp[] = [];
  let admin: pg.Client | undefined;
  const extraClients: pg.Client[] = [];
  const roles: string[] = [];

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    for (const client of extraClients.splice(0)) await client.end().catch(() => undefined);
    await db?.drop();
    for (const role of roles.splice(0)) await admin?.query(`DROP ROLE IF EXISTS "${role.replace(/"/g, '""')}"`);
    await admin?.end();
    db = undefined;
    admin = undefined;
  });

  const schema = () => (db!.options as { schema: string }).schema;
  const sql = async <T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> => (await admin!.query(text, params)).rows as T[];
  const log = () => `"${schema()}"."audit_log"`;

  async function setUp(audit: AuditModuleOptions = {}): Promise<TestApp> {
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    const t = await createTestApp({ db, adapter: 'express', audit });
    apps.push(t);
    return t;
  }

  async function partitionedApp(audit: AuditModuleOptions = {}, target: TestDatabase = db!): Promise<TestApp> {
    const t = await createTestApp({ db: target, adapter: 'express', audit, migrations: PARTITIONED, synchronize: false });
    apps.push(t);
    return t;
  }

  async function closeAll(): Promise<void> {
    for (const app of apps.splice(0)) await app.close();
  }

  async function storeAt(t: TestApp, at: Date, count: number, label: string): Promise<string[]> {
    const rows = Array.from({ length: count }, (_, i) =>
      Object.assign(new AuditLogEntity(), {
        id: uuidv7(at.getTime() + i),
        occurredAt: new Date(at.getTime() + i),
        action: 'order.updated',
        outcome: 'success',
        kind: 'intent',
        actorType: 'user',
        actorId: `u-${label}`,
        actorDisplay: null,
        source: 'http',
        ip: null,
        userAgent: null,
        method: null,
        route: null,
        path: null,
        requestId: null,
        targetType: 'Customer',
        targetId: `${label}-${i}`,
        changes: [{ entity: 'Order', id: `${label}-${i}`, operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }],
        context: null,
        reason: null,
        error: null,
        seq: null,
      }),
    );
    await t.app.get(AuditWriter).write(rows);
    return rows.map((row) => row.id);
  }

  async function otherSession(): Promise<pg.Client> {
    const client = new pg.Client(POSTGRES);
    await client.connect();
    extraClients.push(client);
    return client;
  }

  const dropLockKey = () => `nestjs-system-audit drops ${log()}`;

  const settle = <T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> =>
    Promise.race([promise, new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), ms))]);


  // Defect A (migration fidelity, identity): rebuild() makes the new table with LIKE ...
  // INCLUDING ALL, which gives an identity column a NEW sequence, then setval()s it to
  // max(column) of the copied rows. The old sequence's position is lost: numbers handed out
  // before the migration to rows that are gone (purged events, rolled-back writes) are handed
  // out again. An audit row number that comes back is exactly what it must not do.
  // Expected: the new identity sequence goes on from the old one's last value.
  // Fix: read the old sequence's state (pg_sequence_last_value / last_value, is_called) and
  // setval() the new one to it (for identity columns; serial ones keep their sequence).
  it.fails('migration fidelity: an identity column goes on from its sequence after partitionAuditLog(), not from max() of the rows left', async () => {
    const t = await setUp();
    await sql(`ALTER TABLE ${log()} ADD COLUMN row_no bigint GENERATED ALWAYS AS IDENTITY`);
    await storeAt(t, monthAgo(2), 3, 'two'); // row_no 1..3
    // Seven more numbers handed out to rows that are gone (a purge, writes rolled back).
    await sql(`SELECT nextval(pg_get_serial_sequence($1, 'row_no')) FROM generate_series(1, 7)`, [log()]);
    await closeAll();
    const p = await partitionedApp();
    const id = await p.audit.log({ action: 'order.noted', target: { type: 'order', id: 'after' } });
    const [row] = await sql<{ row_no: string }>(`SELECT row_no FROM ${log()} WHERE id = $1`, [id]);
    expect(Number(row!.row_no)).toBeGreaterThan(10); // observed: 4, a number already given
  });

  // Defect A, down(): the same on unpartitionAuditLog().
  it.fails('migration fidelity: an identity column goes on from its sequence after unpartitionAuditLog()', async () => {
    const t = await setUp();
    await sql(`ALTER TABLE ${log()} ADD COLUMN row_no bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100)`);
    await storeAt(t, monthAgo(2), 2, 'two'); // 100, 101
    await closeAll();
    const p = await partitionedApp();
    await sql(`SELECT nextval(pg_get_serial_sequence($1, 'row_no')) FROM generate_series(1, 5)`, [log()]); // up to 106
    const runner = p.dataSource.createQueryRunner();
    try {
      await unpartitionAuditLog(runner);
    } finally {
      await runner.release();
    }
    const id = await p.audit.log({ action: 'order.noted', target: { type: 'order', id: 'after' } });
    const [row] = await sql<{ row_no: string }>(`SELECT row_no FROM ${log()} WHERE id = $1`, [id]);
    expect(Number(row!.row_no)).toBeGreaterThan(106);
  });

  // Defect A, empty table: every event purged before the migration: the identity restarts at
  // 1 (setval(seq, 1, false)) whatever its START WITH, instead of going on.
  it.fails('migration fidelity: on an emptied audit_log an identity column does not restart at 1 after partitionAuditLog()', async () => {
    const t = await setUp();
    await sql(`ALTER TABLE ${log()} ADD COLUMN row_no bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000)`);
    void t;
    await closeAll();
    const p = await partitionedApp();
    const id = await p.audit.log({ action: 'order.noted', target: { type: 'order', id: 'after' } });
    const [row] = await sql<{ row_no: string }>(`SELECT row_no FROM ${log()} WHERE id = $1`, [id]);
    expect(Number(row!.row_no)).toBeGreaterThanOrEqual(1000); // observed: 1
  });

  // Defect B (purge, unbounded wait): the drops' session advisory lock is taken with
  // pg_advisory_lock(), which waits without any bound. A session that holds it and does not
  // go away (another instance stuck in its drops, a frozen instance whose TCP session lives
  // on until keepalive gives up, a lock leaked by a pooler in transaction mode) stops every
  // other instance's purge — and the scheduled retention — for as long, although the purge
  // could delete the rows instead, as it does when the table lock is busy.
  // Expected: a purge that cannot get the drops' lock promptly (pg_try_advisory_lock, or a
  // lock_timeout around it) drops nothing and deletes the rows, as after a 55P03.
  it.fails('lock: a purge whose drops lock is held by another session still ends (rows deleted) within a few seconds', async () => {
    const first = await setUp();
    await storeAt(first, monthAgo(5), 4, 'five');
    await closeAll();
    const p = await partitionedApp();
    const holder = await otherSession();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [dropLockKey()]);
    const purge = p.audit.purge({ before: monthStartAgo(2) });
    const outcome = await settle(purge, 6000);
    await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [dropLockKey()]);
    await purge.catch(() => undefined);
    expect(outcome === 'pending' ? 'still waiting after 6 s' : outcome.deleted).toBe(4);
  });

  // Defect B with a statement_timeout (common on application roles): the wait for the drops'
  // advisory lock is cancelled (57014) and the whole purge fails, rather than leaving the
  // months to the row deletes. The same happens to the scheduled retention on every run while
  // another instance drops a large month.
  it.fails('lock: with a statement_timeout, a purge whose drops lock is held elsewhere does not fail', async () => {
    const first = await setUp();
    await storeAt(first, monthAgo(5), 4, 'five');
    await closeAll();
    withPostgresSettings(db!, '-c statement_timeout=1500');
    const p = await partitionedApp();
    const holder = await otherSession();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [dropLockKey()]);
    const outcome = await p.audit.purge({ before: monthStartAgo(2) }).then(
      (result) => result.deleted,
      (error: Error) => `failed: ${error.message}`,
    );
    await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [dropLockKey()]);
    expect(outcome).toBe(4); // observed: failed: canceling statement due to statement timeout
  });

  // PLACEHOLDER
});
