// Hostile tests of monthly partitions of audit_log (PostgreSQL). Each test below is a
// reproduction of an attack; "Was a defect" names what it found before the fix, "held" an
// attack that failed, "note" a measurement.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import pg from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AuditEntities,
  AuditLogEntity,
  AuditMigrations,
  AuditSubjectEntity,
  createAuditPartitions,
  listAuditPartitions,
  partitionAuditLog,
  PartitionAuditLogMonthly1767225600000,
  unpartitionAuditLog,
  type AuditModuleOptions,
} from '../../lib/index.js';
import { uuidv7 } from '../../lib/events/uuid-v7.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { logNotes } from '../support/retention.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { Order } from '../app/order.entity.js';
import { AuditJournalEntity } from '../../lib/index.js';
import { monthAgo, monthStartAgo, storeEventsAt } from '../support/partitions.js';
import { createTestDatabase, databases, withPostgresSettings, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/hostile-partitions';
const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };
const PARTITIONED = [...AuditMigrations, PartitionAuditLogMonthly1767225600000];

describe.runIf(databases().includes('postgres'))('hostile: monthly partitions of audit_log (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  const apps: TestApp[] = [];
  let admin: pg.Client | undefined;
  const roles: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => undefined);
    for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => undefined);
    await db?.drop();
    for (const role of roles.splice(0)) await admin?.query(`DROP ROLE IF EXISTS "${role}"`);
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

  const storeAt = storeEventsAt;

  const partitionNames = async () =>
    (await sql<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [log()])).map((row) => row.name);

  /** Calls `hook(sql)` before every statement of every query runner `t`'s data source creates from now on. */
  function beforeEachStatement(t: TestApp, hook: (text: string) => Promise<void>): void {
    const source = t.dataSource;
    const create = source.createQueryRunner.bind(source);
    source.createQueryRunner = ((...args: Parameters<typeof create>) => {
      const runner = create(...args);
      const query = runner.query.bind(runner);
      runner.query = (async (text: string, ...rest: unknown[]) => {
        await hook(text);
        return (query as (...a: unknown[]) => Promise<unknown>)(text, ...rest);
      }) as typeof runner.query;
      return runner;
    }) as typeof source.createQueryRunner;
  }

  // Was defect 1: two instances purging at once. One instance's drop path lists the partitions,
  // the other drops them first: the first then queries a table that no longer exists and its
  // purge fails ("relation ... does not exist", 42P01, not one of the codes it falls back on).
  it.each([
    ['with integrity', INTEGRITY],
    ['without integrity', {}],
  ])('concurrent purges: two instances purging a partitioned audit_log at once both succeed, each event counted once (%s)', async (_name, audit) => {
    const first = await setUp(audit);
    for (const [i, ago] of [5, 4, 3].entries()) await storeAt(first, monthAgo(ago).at, 4, `m${i}`);
    if ('integrity' in audit) await first.audit.checkpoint();
    await closeAll();
    const a = await partitionedApp(audit);
    const b = await partitionedApp(audit);
    // Deterministic interleaving: b has listed the partitions; its drops wait (before their lock) until a's purge is over.
    let aDone: Promise<unknown> = Promise.resolve();
    beforeEachStatement(b, async (text) => {
      if (text.startsWith('SELECT pg_advisory_lock')) await aDone.catch(() => undefined);
    });
    const before = monthStartAgo(2);
    const aPurge = a.audit.purge({ before });
    aDone = aPurge;
    const [ra, rb] = await Promise.allSettled([aPurge, b.audit.purge({ before })]);
    expect(ra.status).toBe('fulfilled');
    expect(rb.status === 'rejected' ? String((rb.reason as Error).message) : 'fulfilled').toBe('fulfilled');
    const deleted = (ra as PromiseFulfilledResult<{ deleted: number }>).value.deleted + (rb as PromiseFulfilledResult<{ deleted: number }>).value.deleted;
    expect(deleted).toBe(12);
  });

  // Was defect 1 again, without any forced interleaving: two purges started together, round
  // after round; one of the two fails in every round observed.
  it('concurrent purges (natural timing): neither of two purges started together fails', async () => {
    const first = await setUp();
    for (const [i, ago] of [8, 7, 6, 5, 4, 3].entries()) await storeAt(first, monthAgo(ago).at, 3, `m${i}`);
    await closeAll();
    const a = await partitionedApp();
    const b = await partitionedApp();
    const errors: string[] = [];
    let deleted = 0;
    for (const ago of [7, 6, 5, 4, 3, 2]) {
      const before = monthStartAgo(ago);
      for (const r of await Promise.allSettled([a.audit.purge({ before }), b.audit.purge({ before })])) {
        if (r.status === 'fulfilled') deleted += r.value.deleted;
        else errors.push((r.reason as Error).message);
      }
    }
    expect(errors).toEqual([]);
    expect(deleted).toBe(18);
  });

  // An administrator detaches a month (to archive it) after the purge listed the
  // partitions: the purge must not drop the detached table.
  it('a month partition detached by an administrator after the purge listed it is not dropped', async () => {
    const first = await setUp();
    await storeAt(first, monthAgo(5).at, 4, 'five');
    await closeAll();
    const t = await partitionedApp();
    const name = `audit_log_p${monthAgo(5).label}`;
    let detached = false;
    beforeEachStatement(t, async (text) => {
      if (!detached && text.startsWith('LOCK TABLE')) {
        detached = true;
        await sql(`ALTER TABLE ${log()} DETACH PARTITION "${schema()}"."${name}"`);
      }
    });
    const result = await t.audit.purge({ before: monthStartAgo(2) });
    expect(detached).toBe(true);
    expect(result.deleted).toBe(0);
    expect(await sql(`SELECT count(*)::int AS n FROM "${schema()}"."${name}"`)).toEqual([{ n: 4 }]);
  });

  // Was defect 2: with integrity on, an event stored late into an old month while the drop is
  // prepared (after the drop path counted the month, while it deletes the month's subject
  // rows) loses its audit_subject rows: the drop is then abandoned (the count changed) and
  // the event stays (it has no seq yet, outside the purge record) but its subject rows are gone,
  // so history() of its subjects no longer finds it.
  it('subject rows: an event stored into an old month during a purge keeps its audit_subject rows when it stays', async () => {
    const first = await setUp(INTEGRITY);
    const five = monthAgo(5);
    await storeAt(first, five.at, 3, 'five');
    await first.audit.checkpoint();
    await closeAll();
    const t = await partitionedApp(INTEGRITY);
    let late: string | undefined;
    beforeEachStatement(t, async (text) => {
      // The drop path's first page of the month's ids: a late event arrives just before it.
      if (late === undefined && /^SELECT "id" AS id FROM .*audit_log_p/.test(text)) {
        late = 'pending';
        [late] = await storeAt(t, monthAgo(5, 20).at, 1, 'late');
      }
    });
    const result = await t.audit.purge({ before: monthStartAgo(4) });
    expect(late).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.deleted).toBe(3);
    // The late event stays (not in the signed purge record) ...
    expect(await t.dataSource.getRepository(AuditLogEntity).countBy({ id: late! })).toBe(1);
    // ... and so must its subject row (Order late-0; its target, Customer late-0, is in the event itself).
    expect(await t.dataSource.getRepository(AuditSubjectEntity).countBy({ eventId: late! })).toBe(1);
    expect((await t.audit.history({ type: 'Order', id: 'late-0' })).map((event) => event.id)).toEqual([late]);
  });

  /** What of audit_log's security and metadata a layout change must keep (or refuse to lose). */
  async function securityShape(readerRole: string, columnRole: string, publication: string) {
    const [rls] = await sql<{ rls: boolean; force: boolean; comment: string | null }>(
      `SELECT relrowsecurity AS rls, relforcerowsecurity AS force, obj_description(oid, 'pg_class') AS comment FROM pg_class WHERE oid = $1::regclass`,
      [log()],
    );
    const policies = await sql(`SELECT policyname, cmd, roles::text AS roles, qual FROM pg_policies WHERE schemaname = $1 AND tablename = 'audit_log' ORDER BY 1`, [schema()]);
    const columnGrants = await sql(
      `SELECT column_name, privilege_type FROM information_schema.column_privileges WHERE table_schema = $1 AND table_name = 'audit_log' AND grantee = $2 ORDER BY 1, 2`,
      [schema(), columnRole],
    );
    const [published] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2`, [publication, schema()]);
    const reader = await sql<{ n: number }>(`SELECT has_table_privilege($1, $2, 'SELECT') AS n`, [readerRole, log()]);
    return { ...rls, policies, columnGrants, published: published!.n > 0, readerSelect: reader[0]!.n };
  }

  // Was a defect: the migration silently dropped what it did not list: row-level security (the
  // table's RLS switch and its policies), column-level grants, the table's comment, and its
  // membership of a publication (logical replication / CDC of the audit trail stopped). With
  // RLS, a role that saw only its tenant's events saw every event after the migration. Now
  // carried over, and a publication refused by name before anything changes (a publication of
  // a partitioned table publishes differently: the user decides).
  it('migration fidelity: RLS and its policies, column grants and the table comment survive partitionAuditLog(); a publication is refused by name first', async () => {
    const t = await setUp();
    await storeAt(t, monthAgo(2).at, 2, 'two');
    await t.audit.log({ action: 'order.noted', target: { type: 'order', id: 'now' } }); // actor: system
    const reader = `audit_t_rls_${randomBytes(4).toString('hex')}`;
    const columns = `audit_t_col_${randomBytes(4).toString('hex')}`;
    const publication = `audit_t_pub_${randomBytes(4).toString('hex')}`;
    roles.push(reader, columns);
    cleanups.push(() => sql(`DROP PUBLICATION IF EXISTS "${publication}"`));
    await sql(`CREATE ROLE "${reader}"`);
    await sql(`CREATE ROLE "${columns}"`);
    await sql(`GRANT USAGE ON SCHEMA "${schema()}" TO "${reader}", "${columns}"`);
    await sql(`GRANT SELECT ON ${log()} TO "${reader}"`);
    await sql(`GRANT SELECT (id, action, occurred_at) ON ${log()} TO "${columns}"`);
    await sql(`ALTER TABLE ${log()} ENABLE ROW LEVEL SECURITY`);
    await sql(`CREATE POLICY users_only ON ${log()} FOR SELECT TO "${reader}" USING (actor_type = 'user')`);
    await sql(`COMMENT ON TABLE ${log()} IS 'audit trail: retained 7 years'`);
    await sql(`CREATE PUBLICATION "${publication}" FOR TABLE ${log()}`);
    const visible = async () => {
      await sql('BEGIN');
      await sql(`SET LOCAL ROLE "${reader}"`);
      const [row] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${log()}`);
      await sql('ROLLBACK');
      return row!.n;
    };
    expect(await visible()).toBe(2);
    const before = await securityShape(reader, columns, publication);
    expect(before).toMatchObject({ rls: true, published: true, comment: 'audit trail: retained 7 years' });
    expect(before.policies).toHaveLength(1);
    expect(before.columnGrants).toHaveLength(3);

    await closeAll();
    const runner = new DataSource({ ...db!.options, entities: [...AuditEntities] } as DataSourceOptions);
    await runner.initialize();
    try {
      const queryRunner = runner.createQueryRunner();
      await expect(partitionAuditLog(queryRunner)).rejects.toThrow(new RegExp(`would be lost: publication ${publication}\\.`));
      await queryRunner.release();
    } finally {
      await runner.destroy();
    }
    expect(await securityShape(reader, columns, publication)).toEqual(before);
    await sql(`DROP PUBLICATION "${publication}"`);

    await partitionedApp();
    expect(await partitionNames()).toContain('audit_log_default');
    const after = await securityShape(reader, columns, publication);
    expect({ visible: await visible(), ...after }).toEqual({ visible: 2, ...before, published: false });
  });

  // Was defect 4 (message): a view over audit_log (common for reporting) makes the migration fail
  // midway with PostgreSQL's "cannot drop table <schema>.audit_log_relayout because other
  // objects depend on it": a table name the user never created, not an AuditPartitionError
  // naming the view, unlike the documented check of unique indexes "before anything changes".
  // (The migration's transaction rolls back, so nothing is lost.) Same with a foreign key
  // from another table to audit_log(id).
  it('message: a view over audit_log stops partitionAuditLog() with an AuditPartitionError naming the view', async () => {
    const t = await setUp();
    await storeAt(t, monthAgo(2).at, 2, 'two');
    await sql(`CREATE VIEW "${schema()}".audit_failures AS SELECT id, action, occurred_at FROM ${log()} WHERE outcome <> 'success'`);
    const runner = t.dataSource.createQueryRunner();
    try {
      const error = await partitionAuditLog(runner).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error?.message).toMatch(/audit_failures/);
      expect(error?.name).toBe('AuditPartitionError');
    } finally {
      await runner.release();
    }
  });

  /** A catalog picture of audit_log: columns, constraints, indexes, triggers, grants, owner, comments. */
  async function catalogShape() {
    const columns = await sql(
      `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS "default", col_description(a.attrelid, a.attnum) AS comment
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [log()],
    );
    const constraints = await sql(`SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY 1`, [log()]);
    const indexes = await sql(`SELECT i.relname AS name, replace(pg_get_indexdef(x.indexrelid), ' ONLY ', ' ') AS def FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass ORDER BY 1`, [log()]);
    // Parentheses dropped: a re-created WHEN prints its OR chain flattened (same meaning).
    const triggers = await sql(`SELECT tgname, translate(pg_get_triggerdef(oid), '()', '') AS def, tgenabled FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1`, [log()]);
    const grants = await sql(`SELECT relacl::text AS acl, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = $1::regclass`, [log()]);
    return { columns, constraints, indexes, triggers, grants };
  }

  it('held: partitionAuditLog() then unpartitionAuditLog() gives back the same table (columns, keys, indexes incl. a user one, triggers, grants, owner)', async () => {
    const t = await setUp(INTEGRITY);
    await storeAt(t, monthAgo(3).at, 2, 'three');
    await t.audit.checkpoint();
    const role = `audit_t_grant_${randomBytes(4).toString('hex')}`;
    roles.push(role);
    await sql(`CREATE ROLE "${role}"`);
    await sql(`GRANT SELECT, INSERT ON ${log()} TO "${role}" WITH GRANT OPTION`);
    await sql(`CREATE INDEX idx_custom_request ON ${log()} (request_id) WHERE request_id IS NOT NULL`);
    await sql(`COMMENT ON COLUMN ${log()}.reason IS 'why'`);
    const before = await catalogShape();
    const runner = t.dataSource.createQueryRunner();
    try {
      await partitionAuditLog(runner, { monthsAhead: 1 });
      await unpartitionAuditLog(runner);
    } finally {
      await runner.release();
    }
    expect(await catalogShape()).toEqual(before);
    expect((await t.audit.verify()).ok).toBe(true);
  });

  it('held: process TZ=Asia/Tokyo and session TimeZone=America/St_Johns: events at a month boundary land in their UTC month, bounds are UTC, a purge drops exactly the month before', async () => {
    const zone = process.env['TZ'];
    process.env['TZ'] = 'Asia/Tokyo';
    cleanups.push(async () => {
      if (zone === undefined) delete process.env['TZ'];
      else process.env['TZ'] = zone;
    });
    expect(new Date(0).getHours()).toBe(9);
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    withPostgresSettings(db, '-c TimeZone=America/St_Johns');
    const t = await createTestApp({ db, adapter: 'express' });
    apps.push(t);
    expect(await t.dataSource.query('SHOW TimeZone')).toEqual([{ TimeZone: 'America/St_Johns' }]);
    const boundary = monthStartAgo(3);
    const [lastOfFour] = await storeAt(t, new Date(boundary.getTime() - 1), 1, 'lastOfFour');
    const [firstOfThree] = await storeAt(t, boundary, 1, 'firstOfThree');
    const [oldest] = await storeAt(t, monthStartAgo(5), 1, 'oldest');
    await closeAll();
    const p = await partitionedApp({}, db);
    const where = async (id: string) => (await p.dataSource.query(`SELECT tableoid::regclass::text AS t FROM ${log()} WHERE id = $1`, [id]))[0].t as string;
    expect(await where(lastOfFour!)).toMatch(new RegExp(`audit_log_p${monthAgo(4).label}$`));
    expect(await where(firstOfThree!)).toMatch(new RegExp(`audit_log_p${monthAgo(3).label}$`));
    expect(await where(oldest!)).toMatch(new RegExp(`audit_log_p${monthAgo(5).label}$`));
    const result = await p.audit.purge({ before: boundary });
    expect(result.deleted).toBe(2);
    const names = await partitionNames();
    expect(names).not.toContain(`audit_log_p${monthAgo(4).label}`);
    expect(names).toContain(`audit_log_p${monthAgo(3).label}`);
    expect(await p.dataSource.getRepository(AuditLogEntity).countBy({ id: firstOfThree! })).toBe(1);
  });

  it.each([
    ['capitals and a space', (tag: string) => `Audit Schema ${tag}`],
    // (A schema with a double quote in its name is not tried: TypeORM itself cannot start on one.)
  ])('held: quoting: a schema name with %s and an entityPrefix: partition, purge by drop, re-create months', async (_name, schemaName) => {
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    const name = schemaName(randomBytes(3).toString('hex'));
    const quoted = `"${name.replace(/"/g, '""')}"`;
    await sql(`CREATE SCHEMA ${quoted}`);
    cleanups.push(() => sql(`DROP SCHEMA IF EXISTS ${quoted} CASCADE`));
    const base = await createTestDatabase('postgres');
    cleanups.push(() => base.drop());
    const odd: TestDatabase = { ...base, options: { ...base.options, schema: name, entityPrefix: 'Ap_' } as TestDatabase['options'] };
    const t = await createTestApp({ db: odd, adapter: 'express' });
    apps.push(t);
    await storeAt(t, monthAgo(4).at, 2, 'four');
    await closeAll();
    const p = await partitionedApp({}, odd);
    const names = (await sql<{ name: string }>(`SELECT c.relname AS name FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relispartition ORDER BY 1`, [quoted])).map((r) => r.name);
    expect(names).toContain(`Ap_audit_log_p${monthAgo(4).label}`);
    const result = await p.audit.purge({ before: monthStartAgo(3) });
    expect(result.deleted).toBe(2);
    await sql(`DROP TABLE ${quoted}."Ap_audit_log_p${monthAgo(-3).label}"`);
    expect((await createAuditPartitions(p.dataSource)).created).toEqual([`Ap_audit_log_p${monthAgo(-3).label}`]);
  });

  // Was defect 5: creating a month partition (the module's maintenance at start-up, daily and at
  // each purge; createAuditPartitions()) holds ACCESS EXCLUSIVE on audit_log while PostgreSQL
  // scans the whole default partition (to prove none of its rows belong to the new month),
  // once per month created, all in one transaction. The default partition fills up exactly in
  // the case docs/retention.md describes (a role that cannot create partitions: "events of a
  // month without a partition go to the default partition ... they stay there"), and then
  // every later creation stalls every writer (and reader) for as long as those scans take:
  // the documented 1 s bound is only on the wait for the lock, not on the time it is held.
  it(
    'lock: creating the missing months does not stall writers for longer than about a second when the default partition is large',
    async () => {
      await setUp();
      await closeAll();
      const p = await partitionedApp();
      // 300,000 events of a month no partition covers (e.g. left to the default while the
      // application's role could not create partitions): in the default partition.
      await sql(
        `INSERT INTO ${log()} (id, occurred_at, action, outcome, kind, actor_type, actor_id, source, target_type, target_id, reason)
         SELECT gen_random_uuid(), TIMESTAMP '2020-01-01' + i * INTERVAL '1 second', 'order.updated', 'success', 'intent', 'user', 'u', 'http', 'Order', i::text, repeat('r', 700)
           FROM generate_series(1, 300000) i`,
      );
      expect(await sql(`SELECT count(*)::int AS n FROM "${schema()}"."audit_log_default"`)).toEqual([{ n: 300000 }]);
      await sql(`ANALYZE ${log()}`);
      // Months 1..3 ahead exist; the next months are missing, as when the owner's monthly job is late.
      const began = Date.now();
      const creating = createAuditPartitions(p.dataSource, { monthsAhead: 12 }); // a year ahead: nine months to create
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = Date.now();
      await p.audit.log({ action: 'order.noted', target: { type: 'order', id: 'during' } });
      const stalled = Date.now() - started;
      const result = await creating;
      expect(result.created).toHaveLength(9);
      console.log(`writer stalled ${stalled} ms while createAuditPartitions() created ${result.created.length} months in ${Date.now() - began} ms`);
      expect(stalled).toBeLessThan(800);
    },
    300_000,
  );

  /** Collects the module's Logger warnings from now until the test ends. */
  function captureWarnings(): string[] {
    const warnings: string[] = [];
    const original = Logger.prototype.warn;
    Logger.prototype.warn = function (this: unknown, message: unknown, ...rest: unknown[]) {
      warnings.push(String(message));
      return (original as (...args: unknown[]) => void).call(this, message, ...rest);
    };
    cleanups.push(async () => void (Logger.prototype.warn = original));
    return warnings;
  }

  async function behindProxy(): Promise<{ proxy: TcpProxy; db: TestDatabase }> {
    const target = db!.options as { host: string; port: number };
    const proxy = new TcpProxy(target.host, target.port);
    const port = await proxy.start();
    cleanups.push(() => proxy.stop());
    return { proxy, db: { ...db!, options: { ...db!.options, port } as TestDatabase['options'] } };
  }

  // Was defect 6 (messages): on a PostgreSQL audit_log that is NOT partitioned (partitions never
  // set up), a purge during a database outage now also logs "Audit partitions: the next
  // months' partitions of audit_log could not be created (...) When the application's role
  // does not own audit_log, run createAuditPartitions() as the owner": advice about a feature
  // that is not in use (createAuditPartitions() would throw "is not partitioned").
  it('message: a purge during an outage on a non-partitioned PostgreSQL audit_log logs nothing about partitions', async () => {
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    const { proxy, db: proxied } = await behindProxy();
    const t = await createTestApp({ db: proxied, adapter: 'express' });
    apps.push(t);
    const warnings = captureWarnings();
    proxy.cut();
    await expect(t.audit.purge({ before: monthStartAgo(1) })).rejects.toThrow();
    proxy.restore();
    expect(warnings.filter((message) => message.includes('partition'))).toEqual([]);
  });

  // Was defect 7 (messages): the maintenance warning is logged once per process under one key
  // whatever its cause, so a passing connection error consumes it: when creating the next
  // months later fails for a lasting reason, nothing is ever logged, and events quietly go
  // to the default partition (where they stay, purged row by row, and slow every later
  // partition creation: DEFECT 5).
  it('message: after a passing outage, a lasting failure to create the next months is still reported', async () => {
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    const seed = await createTestApp({ db, adapter: 'express' });
    apps.push(seed);
    await closeAll();
    const { proxy, db: proxied } = await behindProxy();
    const t = await partitionedApp({}, proxied);
    const warnings = captureWarnings();
    // A passing outage during a purge.
    proxy.cut();
    await expect(t.audit.purge({ before: monthStartAgo(1) })).rejects.toThrow();
    proxy.restore();
    // The outage is the purge's own error (thrown to its caller); nothing is said about partitions then.
    const transient = warnings.filter((message) => message.includes('could not be created'));
    expect(transient).toHaveLength(0);
    // A lasting failure: the furthest month's partition cannot be created (a table of that name is in the way).
    const furthest = `audit_log_p${monthAgo(-3).label}`;
    await sql(`DROP TABLE "${schema()}"."${furthest}"`);
    await sql(`CREATE TABLE "${schema()}"."${furthest}" (note text)`);
    await expect(createAuditPartitions(t.dataSource)).rejects.toThrow(/already exists/);
    await t.audit.purge({ before: monthStartAgo(1) });
    await t.audit.purge({ before: monthStartAgo(1) });
    expect(warnings.filter((message) => message.includes('could not be created') && message.includes('already exists'))).toHaveLength(1);
  });

  // Was defect 8 (lock): while a long read holds audit_log (an export, a report), a purge asks
  // for ACCESS EXCLUSIVE once per old month, each time waiting its full second with every
  // writer queued behind it, then moves on to the next month, though the reader is still
  // there. With six old months the module's writes are held up for about six seconds in
  // all, not the "at most one second" docs/retention.md describes. Expected: give up the drops
  // of this purge after the first lock timeout (or bound the total wait).
  it('lock: a purge that cannot get the lock holds writers up for about a second in all, not a second per old month', async () => {
    const first = await setUp();
    for (const [i, ago] of [8, 7, 6, 5, 4, 3].entries()) await storeAt(first, monthAgo(ago).at, 2, `m${i}`);
    await closeAll();
    const t = await partitionedApp();
    const reader = new pg.Client(POSTGRES);
    await reader.connect();
    cleanups.push(() => reader.end());
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${log()}`);
    let stop = false;
    let held = 0;
    const writes = (async () => {
      while (!stop) {
        const started = Date.now();
        await t.audit.log({ action: 'order.noted', target: { type: 'order', id: 'during' } });
        const took = Date.now() - started;
        if (took > 100) held += took;
      }
    })();
    const result = await t.audit.purge({ before: monthStartAgo(2) });
    stop = true;
    await writes;
    await reader.query('ROLLBACK');
    expect(result.deleted).toBe(12);
    console.log(`writers held up ${held} ms in all during the purge`);
    expect(held).toBeLessThan(2000);
  });

  // Was defect 9 (data removed without a record): without integrity, a purge that finds no event
  // older than its cut-off writes no audit.purged record, but still drops the month partitions
  // before the cut-off ("months emptied earlier"), whatever they hold by the time of the drop.
  // An event stored late into such a month meanwhile (journal recovery, a queued write) is
  // removed with its subject rows, with no purge record, and the purge reports deleted: 0.
  it('no record: an event stored into an emptied old month during a purge is not removed without a purge record', async () => {
    const first = await setUp();
    await storeAt(first, monthAgo(5).at, 2, 'five');
    await closeAll();
    const t = await partitionedApp();
    await t.audit.purge({ before: monthStartAgo(4) }); // month -5 dropped; -4 and -3 stay, empty
    expect(await partitionNames()).toContain(`audit_log_p${monthAgo(4).label}`);
    const records = await t.dataSource.getRepository(AuditLogEntity).countBy({ action: 'audit.purged' });
    let late: string | undefined;
    beforeEachStatement(t, async (text) => {
      // The drop path starts (after the purge counted nothing to remove): a late event arrives.
      if (late === undefined && text.startsWith('SELECT pg_has_role')) {
        late = 'pending';
        [late] = await storeAt(t, monthAgo(4).at, 1, 'late');
      }
    });
    const result = await t.audit.purge({ before: monthStartAgo(2) });
    expect(late).toMatch(/^[0-9a-f-]{36}$/);
    const stays = await t.dataSource.getRepository(AuditLogEntity).countBy({ id: late! });
    const recorded = (await t.dataSource.getRepository(AuditLogEntity).countBy({ action: 'audit.purged' })) - records;
    // Either the late event stays, or its removal is recorded and counted.
    expect({ stays, recorded, deleted: result.deleted }).toSatisfy(
      (o: { stays: number; recorded: number; deleted: number }) => o.stays === 1 || (o.recorded === 1 && o.deleted === 1),
    );
  });

  // Was defect 10 (a real error hidden): the writer's INSERT now ends in ON CONFLICT DO NOTHING
  // without a conflict target on every PostgreSQL table, partitioned or not (and on SQLite,
  // see below). Before, only a conflict on the event id was a no-op; now a conflict on ANY
  // unique index swallows the event: write() succeeds, the event is not stored, nothing is
  // logged. On the default, non-partitioned table (everyone who never partitions) a unique
  // index of the user's own (the kind partitions.e2e.spec.ts itself uses as an example,
  // request_id) or a duplicate seq used to fail the write; now the audit event is lost
  // silently. Expected: keep `ON CONFLICT (id)` where the key is (id), and use
  // `ON CONFLICT (id, occurred_at)` on a partitioned table.
  it('hidden error: on a non-partitioned PostgreSQL audit_log, a write that breaks a unique index other than the key fails instead of losing the event', async () => {
    const t = await setUp();
    await sql(`CREATE UNIQUE INDEX idx_custom_request ON ${log()} (request_id)`);
    await storeAt(t, monthAgo(1).at, 1, 'a', 'req-1');
    const second = storeAt(t, monthAgo(1, 11).at, 1, 'b', 'req-1');
    const outcome = await second.then(
      (ids) => `stored? ${ids[0]}`,
      (error: unknown) => `refused: ${(error as Error).message}`,
    );
    const stored = await t.dataSource.getRepository(AuditLogEntity).countBy({ actorId: 'u-b' });
    // Either the event is stored, or the write fails: never "succeeded" with nothing stored.
    expect(stored === 1 || outcome.startsWith('refused')).toBe(true);
  });

  // Was defect 11 (docs vs behaviour): createAuditPartitions() is documented to create the months
  // "in one transaction" with "one creator at a time (advisory lock)", but given a query
  // runner that is not in a transaction (the signature takes one) it opens none: the
  // transaction-level advisory lock is released at once and lock_timeout is not set, so two
  // callers race and one fails with "relation ... already exists".
  it('createAuditPartitions(queryRunner) outside a transaction: two callers at once both succeed', async () => {
    await setUp();
    await closeAll();
    const t = await partitionedApp();
    const outcomes: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (const ago of [-1, -2, -3]) await sql(`DROP TABLE "${schema()}"."audit_log_p${monthAgo(ago).label}"`);
      const runners = [t.dataSource.createQueryRunner(), t.dataSource.createQueryRunner()];
      try {
        const results = await Promise.allSettled(runners.map((runner) => createAuditPartitions(runner)));
        outcomes.push(...results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason.message)));
      } finally {
        for (const runner of runners) await runner.release();
      }
    }
    expect(outcomes).toEqual([]);
  });

  // Was defect 17 (seen once in CI, under load): the second of two creators waited for the
  // first's advisory lock under the one-second lock timeout meant for audit_log. A creator
  // slower than a second (a busy server) made the other fail with "canceling statement due
  // to lock timeout"; so did a writer's transaction holding audit_log a little over a second.
  /**
   * A partitioned app whose month `ago` lacks its partition, and another session that has
   * run the `holding` statement in an open transaction (holding what it locks).
   */
  async function missingMonthWhileHeld(ago: number, holding: () => [string, unknown[]]): Promise<{ t: TestApp; other: pg.Client; month: string }> {
    await setUp();
    await closeAll();
    const t = await partitionedApp();
    const month = `audit_log_p${monthAgo(ago).label}`;
    await sql(`DROP TABLE "${schema()}"."${month}"`);
    const other = new pg.Client(POSTGRES);
    await other.connect();
    cleanups.push(() => other.end());
    await other.query('BEGIN');
    await other.query(...holding());
    return { t, other, month };
  }

  const creatorsLock = (): [string, unknown[]] => ['SELECT pg_advisory_xact_lock(hashtext($1))', [`nestjs-system-audit partitions ${log()}`]];
  const logInUse = (): [string, unknown[]] => [`LOCK TABLE ${log()} IN ROW EXCLUSIVE MODE`, []];
  const created = (t: TestApp): Promise<string> =>
    createAuditPartitions(t.dataSource).then(
      (result) => result.created.join(','),
      (error: Error) => `failed: ${error.name}: ${error.message}`,
    );
  const after = (ms: number, then: () => Promise<unknown>): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, ms)).then(then);

  it('createAuditPartitions() waits for a creator that holds its lock longer than a second', async () => {
    const { t, other, month } = await missingMonthWhileHeld(-1, creatorsLock);
    const release = after(1_500, () => other.query('COMMIT'));
    const outcome = await created(t);
    await release;
    expect(outcome).toBe(month);
  });

  it('createAuditPartitions() does not wait forever for a creator that is stuck: an AuditPartitionError after 30 s', async () => {
    const { t, other } = await missingMonthWhileHeld(-1, creatorsLock);
    const started = Date.now();
    const outcome = await created(t);
    const waited = Date.now() - started;
    await other.query('ROLLBACK');
    expect(outcome).toBe(`failed: AuditPartitionError: Audit partitions: another session has been creating partitions of ${log()} for 30s (its transaction holds their advisory lock)`);
    expect(waited).toBeGreaterThanOrEqual(29_000);
    expect(waited).toBeLessThan(40_000);
  }, 60_000);

  it('createAuditPartitions() tries again when a transaction holds audit_log a little over a second', async () => {
    const { t, other, month } = await missingMonthWhileHeld(-2, logInUse);
    const release = after(1_500, () => other.query('COMMIT'));
    const outcome = await created(t);
    await release;
    expect(outcome).toBe(month);
  });

  it('createAuditPartitions() gives up with the lock timeout when audit_log stays locked', async () => {
    const { t, other, month } = await missingMonthWhileHeld(-1, logInUse);
    const started = Date.now();
    const outcome = await created(t);
    const waited = Date.now() - started;
    await other.query('COMMIT');
    expect(outcome).toMatch(/^failed: .*lock timeout/);
    expect(waited).toBeLessThan(15_000);
    expect(await partitionNames()).not.toContain(month);
  }, 30_000);

  it('note: an instance still running the previous release (rolling deploy) cannot write once another has partitioned audit_log', async () => {
    await setUp();
    await closeAll();
    await partitionedApp();
    // The previous release's INSERT ends in ON CONFLICT ("id") DO NOTHING.
    const id = uuidv7(Date.now());
    const error = await sql(
      `INSERT INTO ${log()} (id, occurred_at, action, outcome, kind, actor_type, source) VALUES ($1, now(), 'order.noted', 'success', 'intent', 'system', 'http') ON CONFLICT ("id") DO NOTHING`,
      [id],
    ).then(
      () => undefined,
      (e: { code?: string }) => e.code,
    );
    expect(error).toBe('42P10'); // there is no unique or exclusion constraint matching the ON CONFLICT specification
  });

  // Was defect 12 (migration fidelity, columns): the new table is made with LIKE ... INCLUDING
  // DEFAULTS, CONSTRAINTS, STORAGE, COMMENTS, but not IDENTITY or GENERATED. A column of the
  // user's own that is an identity column (a row number for exports) keeps its NOT NULL but
  // loses its identity: after the migration every write of the module fails (the writer does
  // not send that column). A stored generated column becomes a plain one: new events get NULL.
  it('migration fidelity: a user identity column and a generated column keep working after partitionAuditLog()', async () => {
    const t = await setUp();
    await sql(`ALTER TABLE ${log()} ADD COLUMN row_no bigint GENERATED ALWAYS AS IDENTITY`);
    await sql(`ALTER TABLE ${log()} ADD COLUMN occurred_day date GENERATED ALWAYS AS ((occurred_at)::date) STORED`);
    await storeAt(t, monthAgo(2).at, 1, 'two');
    await closeAll();
    const p = await partitionedApp();
    const outcome = await p.audit.log({ action: 'order.noted', target: { type: 'order', id: 'after' } }).then(
      (id) => id,
      (error: unknown) => `failed: ${(error as Error).message}`,
    );
    expect(outcome).toMatch(/^[0-9a-f-]{36}$/);
    const [row] = await sql<{ row_no: string | null; occurred_day: Date | null }>(`SELECT row_no, occurred_day FROM ${log()} WHERE id = $1`, [outcome]);
    expect(row!.row_no).not.toBeNull();
    expect(row!.occurred_day).not.toBeNull();
  });

  it('held: a timestamptz occurred_at with session TimeZone=Asia/Kathmandu (+05:45): rows in their UTC month, bounds listed as UTC month starts', async () => {
    db = await createTestDatabase('postgres');
    admin = new pg.Client(POSTGRES);
    await admin.connect();
    withPostgresSettings(db, '-c TimeZone=Asia/Kathmandu');
    const t = await createTestApp({ db, adapter: 'express' });
    apps.push(t);
    // The UPDATE guard's WHEN names occurred_at: set aside while the column changes type.
    const guards = await sql<{ name: string; def: string }>(`SELECT tgname AS name, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal AND pg_get_triggerdef(oid) LIKE '%occurred_at%'`, [log()]);
    for (const guard of guards) await sql(`DROP TRIGGER "${guard.name}" ON ${log()}`);
    await sql(`ALTER TABLE ${log()} ALTER COLUMN occurred_at TYPE timestamptz(3) USING occurred_at AT TIME ZONE 'UTC'`);
    for (const guard of guards) await sql(guard.def);
    const boundary = monthStartAgo(3);
    const insert = (id: string, at: Date) =>
      sql(`INSERT INTO ${log()} (id, occurred_at, action, outcome, kind, actor_type, source) VALUES ($1, $2::timestamptz, 'order.noted', 'success', 'intent', 'system', 'http')`, [id, at.toISOString()]);
    const before = uuidv7(boundary.getTime() - 1);
    const after = uuidv7(boundary.getTime());
    await insert(before, new Date(boundary.getTime() - 1));
    await insert(after, boundary);
    const runner = t.dataSource.createQueryRunner();
    try {
      await partitionAuditLog(runner, { monthsAhead: 0 });
      const where = async (id: string) => (await sql<{ t: string }>(`SELECT tableoid::regclass::text AS t FROM ${log()} WHERE id = $1`, [id]))[0]!.t;
      expect(await where(before)).toMatch(new RegExp(`audit_log_p${monthAgo(4).label}$`));
      expect(await where(after)).toMatch(new RegExp(`audit_log_p${monthAgo(3).label}$`));
      const listed = await listAuditPartitions(runner);
      expect(listed!.find((p) => p.name === `audit_log_p${monthAgo(3).label}`)).toMatchObject({ from: boundary, to: monthStartAgo(2) });
      expect((await createAuditPartitions(runner, { monthsAhead: 0 })).created).toEqual([]);
    } finally {
      await runner.release();
    }
  });

  // Was defect 4b (message): the documented check "a unique index of your own without
  // occurred_at stops the migration with AuditPartitionError naming it, before anything
  // changes" looks at every column of the index, INCLUDE columns too: a unique index on
  // (request_id) INCLUDE (occurred_at) passes the check, and the migration then fails midway
  // with PostgreSQL's "unique constraint on partitioned table must include all partitioning
  // columns", naming no index.
  it('message: a unique index with occurred_at only among its INCLUDE columns is refused by AuditPartitionError naming it', async () => {
    const t = await setUp();
    await sql(`CREATE UNIQUE INDEX idx_custom_request ON ${log()} (request_id) INCLUDE (occurred_at)`);
    const runner = t.dataSource.createQueryRunner();
    try {
      const error = await partitionAuditLog(runner).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error?.message).toMatch(/idx_custom_request/);
      expect(error?.name).toBe('AuditPartitionError');
    } finally {
      await runner.release();
    }
  });

  // Was defect 13 (PRE-EXISTING, not of the partitions feature: reproduced on a plain table): the
  // append-only guard lets a NULL seq be set, and the application role has UPDATE (seq)
  // (docs/database-roles.md). Setting a new event's seq to one already purged (no unique
  // index can refuse it: that row is gone) keeps the event out of the tree for good; verify()
  // reports it ("event 2 does not hash to its stored leaf") until the next purge, which
  // deletes it (seq <= the record's N) although it is no leaf of the tree and is newer than
  // the cut-off; afterwards verify() is ok and the event is gone without a trace. With
  // partitions, the drop path removes such an event the same way.
  it('(older than partitions) a purge does not delete an event whose seq was forged into the purged range; verify() keeps reporting it', async () => {
    const t = await setUp(INTEGRITY);
    await logNotes(t.audit, 3, 'old');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await t.audit.purge({ before: new Date(Date.now() - 10) });
    const x = await t.audit.log({ action: 'order.noted', target: { type: 'order', id: 'x' } });
    await sql(`UPDATE ${log()} SET seq = 2 WHERE id = $1`, [x]); // what UPDATE (seq) allows
    expect((await t.audit.verify()).ok).toBe(false);
    await t.audit.purge({ before: new Date() });
    const left = await t.dataSource.getRepository(AuditLogEntity).countBy({ id: x });
    const ok = (await t.audit.verify()).ok;
    // Observed: { left: 0, ok: true }.
    expect({ left, ok }).toEqual({ left: 1, ok: false });
  });

  it('held: a COMMIT whose answer is lost, on a partitioned audit_log: the event is stored once, the journal ends empty', async () => {
    await setUp();
    await closeAll();
    const { proxy, db: proxied } = await behindProxy();
    const t = await partitionedApp({}, proxied);
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    proxy.cutAfterClientSends(/COMMIT/i);
    const response = await t.request(`/orders/${order.id}`, {
      method: 'PATCH',
      json: { status: 'shipped' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': 'lost-ack-partitioned' },
    });
    expect(response.status).toBe(500);
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && ((await t.rows()).length === 0 || (await journal.count()) > 0); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const rows = await t.dataSource.getRepository(AuditLogEntity).findBy({ requestId: 'lost-ack-partitioned' });
    expect(rows.map((row) => [row.action, row.outcome])).toEqual([['order.updated', 'failure']]);
    expect(await journal.count()).toBe(0);
  });

  // NOTE (risk, measured, not asserted): the migration creates one partition per month from
  // the oldest event's, with no bound on the past (monthsAhead is bounded at 120, the past is
  // not). A log with one event dated seven years back gets ~90 partitions, and every module
  // read that is not by time (an event by id for history()/proof(), verify() by seq, the
  // integrator's UPDATE by id) opens and locks every partition and its indexes. The shared
  // lock table holds max_locks_per_transaction x max_connections (64 x 100 here) entries:
  // a pool of 20 such readers at once can run it out ("out of shared memory").
  it('note: partitions from an old event, and the locks one lookup by id takes', async () => {
    const t = await setUp();
    const [old] = await storeAt(t, new Date(Date.UTC(new Date().getUTCFullYear() - 7, 0, 15)), 1, 'old');
    await closeAll();
    const p = await partitionedApp();
    const partitions = (await partitionNames()).length;
    const runner = p.dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await runner.query(`SELECT * FROM ${log()} WHERE id = $1`, [old]);
      const [{ n }] = await runner.query(`SELECT count(*)::int AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'`);
      await runner.rollbackTransaction();
      console.log(`${partitions} partitions; a lookup by id holds ${n} relation locks until its transaction ends`);
      expect(partitions).toBeGreaterThan(85);
      expect(n).toBeGreaterThan(partitions);
    } finally {
      await runner.release();
    }
  });
});

describe('hostile: the writer without a conflict target on SQLite', () => {
  it('hidden error: on SQLite, a write that breaks a unique index other than the key fails instead of losing the event', async () => {
    const db = await createTestDatabase('sqlite');
    const t = await createTestApp({ db, adapter: 'express' });
    try {
      await t.dataSource.query(`CREATE UNIQUE INDEX idx_custom_request ON audit_log (request_id)`);
      await storeEventsAt(t, new Date(Date.now() - 10), 1, 'a', 'req-1');
      const outcome = await storeEventsAt(t, new Date(), 1, 'b', 'req-1').then(
        () => 'resolved',
        (error: unknown) => `refused: ${(error as Error).message}`,
      );
      const stored = await t.dataSource.getRepository(AuditLogEntity).countBy({ actorId: 'u-b' });
      expect(stored === 1 || outcome.startsWith('refused')).toBe(true);
    } finally {
      await t.close();
    }
  });
});
