// Monthly partitions of audit_log on PostgreSQL: the migration helper turns a populated
// table into one partitioned by month (rows, indexes, guards, grants kept), the module
// keeps writing, sequencing and verifying, a purge drops whole months (with integrity on,
// only months whose events are all inside the signed purge record), and the layout goes
// back on `down`.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AuditLogEntity,
  AuditMigrations,
  AuditPartitionError,
  AuditSubjectEntity,
  createAuditPartitions,
  listAuditPartitions,
  partitionAuditLog,
  PartitionAuditLogMonthly1767225600000,
  unpartitionAuditLog,
  type AuditModuleOptions,
} from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { monthAgo, storeEventsAt } from '../support/partitions.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/partitions';
const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };

describe.runIf(databases().includes('postgres'))('monthly partitions of audit_log (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;
  let admin: pg.Client | undefined;
  const roles: string[] = [];

  afterEach(async () => {
    await t?.close();
    await db?.drop();
    for (const role of roles.splice(0)) await admin?.query(`DROP ROLE IF EXISTS "${role}"`);
    await admin?.end();
    t = undefined;
    db = undefined;
    admin = undefined;
  });

  const schema = () => (db!.options as { schema: string }).schema;
  const sql = async <T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> => (await admin!.query(text, params)).rows as T[];
  const log = () => `"${schema()}"."audit_log"`;

  async function setUp(audit: AuditModuleOptions = {}): Promise<void> {
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    t = await createTestApp({ db, adapter: 'express', audit });
  }

  /** Restarts the app with the partitioning migration (and `synchronize` off: the key is no longer the entity's). */
  async function restartPartitioned(audit: AuditModuleOptions = {}): Promise<void> {
    await t!.close();
    t = await createTestApp({ db: db!, adapter: 'express', audit, migrations: [...AuditMigrations, PartitionAuditLogMonthly1767225600000], synchronize: false });
  }

  const storeAt = (at: Date, count: number, label: string): Promise<string[]> => storeEventsAt(t!, at, count, label);

  const allRows = async () => (await t!.dataSource.getRepository(AuditLogEntity).find({ order: { id: 'ASC' } })).map((row) => ({ ...row }));
  const partitionNames = async () => (await sql<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [log()])).map((row) => row.name);
  const subjects = () => t!.dataSource.getRepository(AuditSubjectEntity).count();
  const refusal = async (statement: string): Promise<string | undefined> => {
    try {
      await admin!.query(statement);
      return undefined;
    } catch (error) {
      const { code, constraint } = error as { code?: string; constraint?: string };
      return constraint ? `${code} ${constraint}` : code;
    }
  };

  it('turns a populated audit_log into monthly partitions: every row, index, guard and grant kept; writes, sequencing and verify go on; down() restores it', async () => {
    await setUp(INTEGRITY);
    const old = [monthAgo(5), monthAgo(4), monthAgo(2)];
    for (const [i, month] of old.entries()) await storeAt(month.at, 3, `m${i}`);
    await t!.audit.log({ action: 'order.noted', target: { type: 'order', id: 'now' } });
    await t!.audit.checkpoint();
    const before = await allRows();
    expect(before.map((row) => row.seq).sort((a, b) => a! - b!)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const role = `audit_t_reader_${randomBytes(4).toString('hex')}`;
    roles.push(role);
    await sql(`CREATE ROLE "${role}"`);
    await sql(`GRANT SELECT, INSERT ON ${log()} TO "${role}"`);

    await restartPartitioned(INTEGRITY);

    expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [log()])).toEqual([{ relkind: 'p' }]);
    // Every month from the oldest event's to three after the current one (those without events too), and the default.
    const expected: string[] = [];
    for (let ago = 5; ago >= -3; ago--) expected.push(`audit_log_p${monthAgo(ago).label}`);
    expect(await partitionNames()).toEqual(['audit_log_default', ...expected]);
    expect(await allRows()).toEqual(before);
    expect(await sql(`SELECT count(*)::int AS n FROM "${schema()}"."audit_log_p${old[0]!.label}"`)).toEqual([{ n: 3 }]);

    // Keys and indexes: (id, occurred_at) primary key, seq no longer unique, the read indexes kept.
    const key = await sql<{ columns: string }>(
      `SELECT array_to_string(ARRAY(SELECT a.attname FROM unnest(x.indkey) k JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k), ',') AS columns FROM pg_index x WHERE x.indrelid = $1::regclass AND x.indisprimary`,
      [log()],
    );
    expect(key).toEqual([{ columns: 'id,occurred_at' }]);
    const indexes = await sql<{ name: string; unique: boolean }>(
      `SELECT i.relname AS name, x.indisunique AS unique FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass AND NOT x.indisprimary ORDER BY 1`,
      [log()],
    );
    expect(indexes).toEqual([
      { name: 'idx_audit_log_action', unique: false },
      { name: 'idx_audit_log_actor', unique: false },
      { name: 'idx_audit_log_actor_id', unique: false },
      { name: 'idx_audit_log_occurred_at', unique: false },
      { name: 'idx_audit_log_request', unique: false },
      { name: 'idx_audit_log_seq', unique: false },
      { name: 'idx_audit_log_source_outcome', unique: false },
      { name: 'idx_audit_log_target', unique: false },
      { name: 'idx_audit_log_unsequenced', unique: false },
    ]);
    expect(await sql(`SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = $2 AND table_name = 'audit_log' ORDER BY 1`, [role, schema()])).toEqual([
      { privilege_type: 'INSERT' },
      { privilege_type: 'SELECT' },
    ]);

    // The append-only guards hold on the parent and on each partition.
    const first = before[0]!;
    expect(await refusal(`UPDATE ${log()} SET reason = 'rewritten' WHERE id = '${first.id}'`)).toBe('55000');
    expect(await refusal(`DELETE FROM ${log()} WHERE id = '${first.id}'`)).toBe('55000');
    expect(await refusal(`UPDATE "${schema()}"."audit_log_p${old[0]!.label}" SET reason = 'rewritten'`)).toBe('55000');
    expect(await refusal(`TRUNCATE ${log()}`)).toBe('55000');
    expect(await refusal(`TRUNCATE "${schema()}"."audit_log_p${old[0]!.label}"`)).toBe('55000');
    expect(await refusal(`TRUNCATE "${schema()}"."audit_log_default"`)).toBe('55000');

    // The module writes on: a retried write stays a no-op, new events are sequenced, verify holds.
    const id = await t!.audit.log({ action: 'order.noted', target: { type: 'order', id: 'after' } });
    const stored = await t!.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id });
    await t!.app.get(AuditWriter).write([Object.assign(new AuditLogEntity(), stored)]);
    expect(await t!.dataSource.getRepository(AuditLogEntity).countBy({ id })).toBe(1);
    const [late] = await storeAt(monthAgo(4, 20).at, 1, 'late');
    await t!.audit.checkpoint();
    // Sequenced in id order (UUID v7: time), the event stored late into an old month first.
    expect((await t!.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id: late! })).seq).toBe(11);
    expect((await t!.dataSource.getRepository(AuditLogEntity).findOneByOrFail({ id })).seq).toBe(12);
    const verified = await t!.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, treeSize: 12 });
    expect((await t!.audit.history({ type: 'Order', id: 'm1-2' })).map((event) => event.target?.id)).toEqual(['m1-2']);

    // A forged duplicate seq is no longer refused by an index: verify reports it.
    const forged = await sql<{ id: string }>(`SELECT id FROM ${log()} WHERE seq = 3`);
    await sql(`ALTER TABLE ${log()} DISABLE TRIGGER USER`);
    await sql(`INSERT INTO ${log()} SELECT (substr(id::text, 1, 35) || CASE WHEN right(id::text, 1) = 'f' THEN 'e' ELSE 'f' END)::uuid, occurred_at, action, outcome, kind, actor_type, 'mallory', actor_display, source, ip, user_agent, method, route, path, request_id, target_type, target_id, changes, context, reason, error, 3 FROM ${log()} WHERE id = $1`, [forged[0]!.id]);
    expect((await t!.audit.verify()).ok).toBe(false);
    await sql(`DELETE FROM ${log()} WHERE actor_id = 'mallory'`);
    await sql(`ALTER TABLE ${log()} ENABLE TRIGGER USER`);
    expect((await t!.audit.verify()).ok).toBe(true);

    // down(): one table again, the same rows, (id) key and a unique seq, guards and grants in place.
    const rowsNow = await allRows();
    const runner = t!.dataSource.createQueryRunner();
    await runner.startTransaction();
    await unpartitionAuditLog(runner);
    await runner.commitTransaction();
    await runner.release();
    expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [log()])).toEqual([{ relkind: 'r' }]);
    expect(await sql(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'audit_log_p%' AND relnamespace = $1::regnamespace`, [`"${schema()}"`])).toEqual([{ n: 0 }]);
    expect(await allRows()).toEqual(rowsNow);
    expect(await sql(`SELECT x.indisunique AS unique FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relname = 'idx_audit_log_seq' AND x.indrelid = $1::regclass`, [log()])).toEqual([{ unique: true }]);
    expect(await refusal(`INSERT INTO ${log()} SELECT (substr(id::text, 1, 35) || CASE WHEN right(id::text, 1) = 'f' THEN 'e' ELSE 'f' END)::uuid, occurred_at, action, outcome, kind, actor_type, actor_id, actor_display, source, ip, user_agent, method, route, path, request_id, target_type, target_id, changes, context, reason, error, 3 FROM ${log()} WHERE seq = 3`)).toBe('23505 idx_audit_log_seq');
    expect(await refusal(`DELETE FROM ${log()} WHERE id = '${first.id}'`)).toBe('55000');
    expect(await refusal(`TRUNCATE ${log()}`)).toBe('55000');
    expect(await sql(`SELECT count(*)::int AS n FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = $2 AND table_name = 'audit_log'`, [role, schema()])).toEqual([{ n: 2 }]);
    expect((await t!.audit.verify()).ok).toBe(true);
  });

  it('a purge drops the months wholly before its cut-off (their subject rows too) and deletes the rest row by row', async () => {
    await setUp();
    const [five, four, two] = [monthAgo(5), monthAgo(4), monthAgo(2)];
    await storeAt(five.at, 4, 'five');
    await storeAt(four.at, 3, 'four');
    const twoIds = await storeAt(two.at, 2, 'two');
    await restartPartitioned();
    const recent = await t!.audit.log({ action: 'order.noted', target: { type: 'order', id: 'now' } });
    expect(await subjects()).toBe(9);

    // Up to the start of the month two months ago: the two older months go whole.
    const cut = new Date(Date.UTC(two.at.getUTCFullYear(), two.at.getUTCMonth(), 1));
    const result = await t!.audit.purge({ before: cut });
    expect(result.deleted).toBe(7);
    const names = await partitionNames();
    expect(names).not.toContain(`audit_log_p${five.label}`);
    expect(names).not.toContain(`audit_log_p${four.label}`);
    expect(names).toContain(`audit_log_p${two.label}`);
    expect(names).not.toContain(`audit_log_p${monthAgo(3).label}`); // empty, and wholly before the cut-off
    expect(names).toContain(`audit_log_p${monthAgo(1).label}`);
    const left = await allRows();
    expect(left.filter((row) => row.action === 'order.updated').map((row) => row.id)).toEqual(twoIds);
    expect(left.some((row) => row.id === recent)).toBe(true);
    expect(await subjects()).toBe(2);
    const record = left.find((row) => row.action === 'audit.purged')!;
    expect(record.context).toMatchObject({ before: cut.toISOString(), events: 7 });

    // A cut-off inside a month: that month's older rows are deleted, its partition stays.
    const result2 = await t!.audit.purge({ before: new Date(two.at.getTime() + 1) });
    expect(result2.deleted).toBe(1);
    expect(await partitionNames()).toContain(`audit_log_p${two.label}`);
    expect((await allRows()).filter((row) => row.action === 'order.updated').map((row) => row.id)).toEqual([twoIds[1]]);
    expect(await subjects()).toBe(1);
  });

  it('with integrity, drops only the months whose events all lie inside the signed purge record; verify stays ok', async () => {
    await setUp(INTEGRITY);
    const [five, four] = [monthAgo(5), monthAgo(4)];
    await storeAt(five.at, 3, 'five');
    await storeAt(four.at, 2, 'four');
    await t!.audit.log({ action: 'order.noted', target: { type: 'order', id: 'now' } });
    await t!.audit.checkpoint();
    // Stored late into the oldest month: sequenced after the newer events.
    const [late] = await storeAt(monthAgo(5, 20).at, 1, 'late');
    await t!.audit.checkpoint();
    await restartPartitioned(INTEGRITY);

    const result = await t!.audit.purge({ before: monthAgo(3, 1).at });
    expect(result).toMatchObject({ deleted: 5, throughSeq: 5 });
    const names = await partitionNames();
    expect(names).not.toContain(`audit_log_p${four.label}`);
    expect(names).toContain(`audit_log_p${five.label}`); // holds seq 7, outside the record
    const left = await allRows();
    expect(left.filter((row) => row.action === 'order.updated').map((row) => [row.id, row.seq])).toEqual([[late, 7]]);
    const verified = await t!.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, purgedThrough: 5 });
  });

  it('a role that does not own the table: no partition is dropped or created, the purge deletes rows, each said once', async () => {
    await setUp();
    const five = monthAgo(5);
    await storeAt(five.at, 3, 'five');
    await t!.close();
    t = undefined;
    // Partitioned by the owner, then run as an application role with table privileges only.
    const owner = await createTestApp({ db: db!, adapter: 'express', migrations: [...AuditMigrations, PartitionAuditLogMonthly1767225600000], synchronize: false });
    await owner.close();
    const furthest = `audit_log_p${monthAgo(-3).label}`;
    await sql(`DROP TABLE "${schema()}"."${furthest}"`);
    const role = `audit_t_app_${randomBytes(4).toString('hex')}`;
    roles.push(role);
    await sql(`CREATE ROLE "${role}"`);
    await sql(`GRANT USAGE ON SCHEMA "${schema()}" TO "${role}"`);
    await sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema()}" TO "${role}"`);
    const app = { ...db! };
    withPostgresSettings(app, `-c role=${role}`);
    const warnings: string[] = [];
    const warn = console.warn;
    const { Logger } = await import('@nestjs/common');
    const spy = Logger.prototype.warn;
    Logger.prototype.warn = function (this: unknown, message: unknown, ...rest: unknown[]) {
      warnings.push(String(message));
      return (spy as (...args: unknown[]) => void).call(this, message, ...rest);
    };
    try {
      t = await createTestApp({ db: app, adapter: 'express', migrations: [...AuditMigrations, PartitionAuditLogMonthly1767225600000], synchronize: false });
      expect(await t.dataSource.query('SELECT current_user AS name')).toEqual([{ name: role }]);
      expect(await partitionNames()).not.toContain(furthest);
      const result = await t.audit.purge({ before: monthAgo(4, 1).at });
      expect(result.deleted).toBe(3);
      await t.audit.purge({ before: monthAgo(4, 1).at });
    } finally {
      Logger.prototype.warn = spy;
      console.warn = warn;
    }
    expect(await partitionNames()).toContain(`audit_log_p${five.label}`);
    expect((await allRows()).filter((row) => row.action === 'order.updated')).toEqual([]);
    expect(warnings.filter((message) => message.includes('could not be created'))).toHaveLength(1);
    expect(warnings.filter((message) => message.includes('does not own the partitions'))).toHaveLength(1);
  });

  /** Three events of five months ago in their month's partition, and a reader whose open transaction holds audit_log. */
  async function oldMonthWhileRead(): Promise<{ month: string; reader: pg.Client }> {
    await setUp();
    const five = monthAgo(5);
    await storeAt(five.at, 3, 'five');
    await restartPartitioned();
    const reader = new pg.Client(POSTGRES);
    await reader.connect();
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${log()}`);
    return { month: `audit_log_p${five.label}`, reader };
  }

  it('a partition drop that cannot get its lock (a long read holds the table) gives way to row deletes', async () => {
    const { month, reader } = await oldMonthWhileRead();
    try {
      const started = Date.now();
      const result = await t!.audit.purge({ before: monthAgo(4, 1).at });
      expect(result.deleted).toBe(3);
      expect(Date.now() - started).toBeLessThan(10_000);
      // Meanwhile the module kept writing.
      await t!.audit.log({ action: 'order.noted', target: { type: 'order', id: 'during' } });
    } finally {
      await reader.query('ROLLBACK');
      await reader.end();
    }
    expect(await partitionNames()).toContain(month);
    // The next purge, with nothing in the way, drops the emptied month.
    await t!.audit.purge({ before: monthAgo(4, 1).at });
    expect(await partitionNames()).not.toContain(month);
  });

  it('a partition drop whose lock is busy a little over a second tries again and drops the month', async () => {
    const { month, reader } = await oldMonthWhileRead();
    try {
      const release = new Promise((resolve) => setTimeout(resolve, 1_500)).then(() => reader.query('ROLLBACK'));
      const result = await t!.audit.purge({ before: monthAgo(4, 1).at });
      await release;
      expect(result.deleted).toBe(3);
    } finally {
      await reader.end();
    }
    expect(await partitionNames()).not.toContain(month);
  });

  it('createAuditPartitions(): creates the missing months, skips one the default partition holds events of, and is idempotent; start-up does it too', async () => {
    await setUp();
    await restartPartitioned();
    const furthest = `audit_log_p${monthAgo(-3).label}`;
    await sql(`DROP TABLE "${schema()}"."${furthest}"`);
    // An event seven months ahead lands in the default partition.
    await storeAt(monthAgo(-7).at, 1, 'ahead');
    expect(await sql(`SELECT count(*)::int AS n FROM "${schema()}"."audit_log_default"`)).toEqual([{ n: 1 }]);

    const result = await createAuditPartitions(t!.dataSource, { monthsAhead: 8 });
    expect(result.created).toEqual([furthest, ...[-4, -5, -6, -8].map((ago) => `audit_log_p${monthAgo(ago).label}`)]);
    expect(result.skipped).toEqual([monthAgo(-7).label.replace('_', '-')]);
    expect(await createAuditPartitions(t!.dataSource, { monthsAhead: 8 })).toEqual({ created: [], skipped: result.skipped });
    const listed = await t!.dataSource.transaction(async (manager) => listAuditPartitions(manager.queryRunner!));
    expect(listed!.at(-1)).toMatchObject({ name: 'audit_log_default' });
    expect(listed![0]).toMatchObject({ name: `audit_log_p${monthAgo(0).label}`, from: new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)) });

    // Two at once (instances starting together): one creates, the other finds it done.
    await sql(`DROP TABLE "${schema()}"."${furthest}"`);
    const both = await Promise.all([createAuditPartitions(t!.dataSource), createAuditPartitions(t!.dataSource)]);
    expect(both.flatMap((one) => one.created)).toEqual([furthest]);

    // A restart creates the months up to three ahead when one is missing.
    await sql(`DROP TABLE "${schema()}"."${furthest}"`);
    await restartPartitioned();
    expect(await partitionNames()).toContain(furthest);
  });

  it('bad input and other databases get an error that names the problem; nothing is changed', async () => {
    await setUp();
    const runner = t!.dataSource.createQueryRunner();
    try {
      await expect(createAuditPartitions(t!.dataSource)).rejects.toThrow(/audit_log" is not partitioned: partition it with partitionAuditLog\(\) in a migration first/);
      await expect(partitionAuditLog(runner, { monthsAhead: -1 })).rejects.toThrow(/monthsAhead must be a whole number from 0 to 120, got -1/);
      await expect(partitionAuditLog(runner, { months: 2 } as never)).rejects.toThrow(/months is not an option \(known: monthsAhead\)/);
      // A unique index PostgreSQL could not keep on a partitioned table (outside a transaction: the helper opens its own).
      await sql(`CREATE UNIQUE INDEX idx_custom_request ON ${log()} (request_id)`);
      const refused = partitionAuditLog(runner);
      await expect(refused).rejects.toBeInstanceOf(AuditPartitionError);
      await expect(refused).rejects.toThrow(/unique index idx_custom_request \(request_id\) does not include occurred_at/);
      expect(runner.isTransactionActive).toBe(false);
      expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE 'audit_log%' AND relkind IN ('r', 'p') AND relnamespace = $1::regnamespace`, [`"${schema()}"`])).toEqual([
        { relname: 'audit_log' },
      ]);
      expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [log()])).toEqual([{ relkind: 'r' }]);
      // Without it, the helper outside a transaction does the whole change.
      await sql(`DROP INDEX "${schema()}".idx_custom_request`);
      await partitionAuditLog(runner, { monthsAhead: 0 });
      expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [log()])).toEqual([{ relkind: 'p' }]);
      expect(await partitionNames()).toEqual(['audit_log_default', `audit_log_p${monthAgo(0).label}`]);
      await unpartitionAuditLog(runner);
      await unpartitionAuditLog(runner); // not partitioned: nothing to do
      expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [log()])).toEqual([{ relkind: 'r' }]);
    } finally {
      await runner.release();
    }
  });
});

describe('monthly partitions on other databases', () => {
  it('the helpers refuse SQLite by name; the migration changes nothing there', async () => {
    const { DataSource } = await import('typeorm');
    const { AuditEntities } = await import('../../lib/index.js');
    const source = new DataSource({ type: 'better-sqlite3', database: ':memory:', entities: [...AuditEntities], migrations: [...AuditMigrations, PartitionAuditLogMonthly1767225600000], migrationsRun: true });
    await source.initialize();
    try {
      const runner = source.createQueryRunner();
      await expect(partitionAuditLog(runner)).rejects.toThrow('Audit partitions: partitionAuditLog() needs PostgreSQL 13 or later; this data source is better-sqlite3');
      await expect(createAuditPartitions(source)).rejects.toThrow(/createAuditPartitions\(\) needs PostgreSQL 13 or later/);
      expect(await listAuditPartitions(runner)).toBeUndefined();
      await runner.release();
      expect(await source.query(`SELECT count(*) AS n FROM migrations WHERE name = 'PartitionAuditLogMonthly1767225600000'`)).toEqual([{ n: 1 }]);
    } finally {
      await source.destroy();
    }
  });
});
