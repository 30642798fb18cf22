import { randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DataSource, type EntityTarget, type ObjectLiteral } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditEntities, AuditLogEntity, AuditMigrations, AuditTreeEntity } from '../../lib/index.js';
import { withAuditPurge } from '../../lib/storage/append-only.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { MARIADB, POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

const REFUSED = (table: string) => new RegExp(`${table} is append-only: UPDATE and DELETE are refused \\(nestjs-system-audit\\)`);

/** A data source on a fresh database with every audit migration applied. */
async function migrated(db: TestDatabase, entityPrefix?: string): Promise<DataSource> {
  const dataSource = new DataSource({ ...db.options, entityPrefix, entities: [...AuditEntities], migrations: AuditMigrations } as never);
  await dataSource.initialize();
  await dataSource.runMigrations();
  return dataSource;
}

/** Plain SQL on the audit tables of one data source. */
function tables(dataSource: DataSource) {
  const table = (entity: EntityTarget<ObjectLiteral>) => escapedTable(dataSource, dataSource.getMetadata(entity));
  const q = (name: string) => dataSource.driver.escape(name);
  const log = table(AuditLogEntity);
  const tree = table(AuditTreeEntity);
  const checkpoint = table(AuditCheckpointEntity);
  return {
    log,
    tree,
    checkpoint,
    q,
    /** Stores an event (seq NULL) the way the module does, through the entity. */
    insertEvent: async (): Promise<string> => {
      const id = randomUUID();
      await dataSource.getRepository(AuditLogEntity).insert({
        id,
        occurredAt: new Date('2025-12-01T10:00:00.123Z'),
        action: 'order.paid',
        outcome: 'success',
        kind: 'intent',
        actorType: 'user',
        actorId: '7',
        source: 'http',
        changes: [{ entity: 'Order', id: '1', operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }],
        context: { note: 'x' },
        seq: null,
      });
      return id;
    },
    insertNode: async (level: number, idx: number): Promise<void> => {
      await dataSource.getRepository(AuditTreeEntity).insert({ level, index: idx, hash: 'a'.repeat(64), eventId: null });
    },
    insertCheckpoint: async (treeSize: number): Promise<void> => {
      await dataSource.getRepository(AuditCheckpointEntity).insert({ treeSize, rootHash: 'b'.repeat(64), note: 'note\n', createdAt: new Date() });
    },
    event: (id: string) => dataSource.getRepository(AuditLogEntity).findOneBy({ id }),
    count: async (entity: EntityTarget<ObjectLiteral>) => dataSource.getRepository(entity).count(),
  };
}

/** Drops a trigger as an administrator would. */
const dropTrigger = (kind: DatabaseKind, trigger: string, table: string, q: (name: string) => string): string =>
  kind === 'postgres' ? `DROP TRIGGER ${q(trigger)} ON ${table}` : `DROP TRIGGER ${q(trigger)}`;

describe.each(databases())('append-only audit tables on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  let t: ReturnType<typeof tables>;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await migrated(db);
    t = tables(dataSource);
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('refuses an UPDATE of an event: the row stays as it was', async () => {
    const id = await t.insertEvent();
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'rewritten' WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('action')} = 'order.refunded'`)).rejects.toThrow(REFUSED('audit_log'));
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('context')} = NULL`)).rejects.toThrow(REFUSED('audit_log'));
    expect(await t.event(id)).toMatchObject({ reason: null, action: 'order.paid', context: { note: 'x' } });
  });

  it('refuses a DELETE of an event', async () => {
    const id = await t.insertEvent();
    await expect(dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    expect(await t.event(id)).not.toBeNull();
  });

  it('lets the integrator set a NULL seq, once, and nothing with it', async () => {
    const id = await t.insertEvent();
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 5 WHERE ${t.q('id')} = '${id}'`);
    expect((await t.event(id))!.seq).toBe(5);
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 6 WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = NULL WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    expect((await t.event(id))!.seq).toBe(5);

    const other = await t.insertEvent();
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 7, ${t.q('reason')} = 'x' WHERE ${t.q('id')} = '${other}'`)).rejects.toThrow(
      REFUSED('audit_log'),
    );
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 7, ${t.q('actor_id')} = NULL WHERE ${t.q('id')} = '${other}'`)).rejects.toThrow(
      REFUSED('audit_log'),
    );
    expect(await t.event(other)).toMatchObject({ seq: null, reason: null, actorId: '7' });
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 7 WHERE ${t.q('id')} = '${other}'`);
    expect((await t.event(other))!.seq).toBe(7);
  });

  it('lets an UPDATE through that changes nothing (the MySQL/MariaDB writer re-stores an event with ON DUPLICATE KEY UPDATE)', async () => {
    const id = await t.insertEvent();
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = 3 WHERE ${t.q('id')} = '${id}'`);
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('seq')} = ${t.q('seq')}, ${t.q('reason')} = ${t.q('reason')} WHERE ${t.q('id')} = '${id}'`);
    if (kind === 'mariadb') {
      await dataSource.query(`INSERT INTO ${t.log} (id, occurred_at, action, outcome, kind, actor_type, source) VALUES ('${id}', NOW(3), 'other', 'failure', 'change', 'system', 'job') ON DUPLICATE KEY UPDATE id = id`);
    }
    expect(await t.event(id)).toMatchObject({ action: 'order.paid', outcome: 'success', seq: 3 });
  });

  it('refuses UPDATE and DELETE on audit_tree and audit_checkpoint', async () => {
    await t.insertNode(0, 100);
    await t.insertCheckpoint(100);
    await expect(dataSource.query(`UPDATE ${t.tree} SET ${t.q('hash')} = '${'c'.repeat(64)}'`)).rejects.toThrow(REFUSED('audit_tree'));
    await expect(dataSource.query(`DELETE FROM ${t.tree}`)).rejects.toThrow(REFUSED('audit_tree'));
    await expect(dataSource.query(`UPDATE ${t.checkpoint} SET ${t.q('note')} = 'forged'`)).rejects.toThrow(REFUSED('audit_checkpoint'));
    await expect(dataSource.query(`DELETE FROM ${t.checkpoint}`)).rejects.toThrow(REFUSED('audit_checkpoint'));
    expect(await dataSource.getRepository(AuditTreeEntity).findOneBy({ level: 0, index: 100 })).toMatchObject({ hash: 'a'.repeat(64) });
    expect(await dataSource.getRepository(AuditCheckpointEntity).findOneBy({ treeSize: 100 })).toMatchObject({ note: 'note\n' });
  });

  it.runIf(kind === 'postgres')('refuses TRUNCATE of the three tables (PostgreSQL)', async () => {
    for (const [table, name] of [
      [t.log, 'audit_log'],
      [t.tree, 'audit_tree'],
      [t.checkpoint, 'audit_checkpoint'],
    ] as const) {
      await expect(dataSource.query(`TRUNCATE ${table}`)).rejects.toThrow(new RegExp(`${name} is append-only: TRUNCATE is refused`));
    }
    await expect(dataSource.getRepository(AuditLogEntity).clear()).rejects.toThrow(/audit_log is append-only/);
    expect(await t.count(AuditLogEntity)).toBeGreaterThan(0);
  });

  it('refuses with the database\'s own error state (PostgreSQL 55000, MySQL 45000, SQLite a trigger constraint)', async () => {
    await t.insertEvent();
    const error = (await dataSource.query(`DELETE FROM ${t.log}`).then(
      () => undefined,
      (failure: unknown) => failure,
    )) as { driverError?: { code?: string; sqlState?: string } } | undefined;
    const state = { postgres: error?.driverError?.code, mariadb: error?.driverError?.sqlState, sqlite: error?.driverError?.code }[kind];
    expect(state).toBe({ postgres: '55000', mariadb: '45000', sqlite: 'SQLITE_CONSTRAINT_TRIGGER' }[kind]);
  });

  it('withAuditPurge deletes rows of all three tables; UPDATE stays refused inside; afterwards the guards are back', async () => {
    const id = await t.insertEvent();
    await t.insertNode(0, 200);
    await t.insertCheckpoint(200);
    const runner = dataSource.createQueryRunner();
    try {
      await withAuditPurge(runner, async (inside) => {
        await expect(inside.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'x' WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
      }).catch(() => undefined); // PostgreSQL aborts the transaction after the refused UPDATE: checked again below
      const deleted = await withAuditPurge(runner, async (inside) => {
        await inside.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`);
        await inside.query(`DELETE FROM ${t.tree} WHERE ${t.q('idx')} = 200`);
        await inside.query(`DELETE FROM ${t.checkpoint} WHERE ${t.q('tree_size')} = 200`);
        return 'done';
      });
      expect(deleted).toBe('done');
    } finally {
      await runner.release();
    }
    expect(await t.event(id)).toBeNull();
    expect(await dataSource.getRepository(AuditTreeEntity).findOneBy({ level: 0, index: 200 })).toBeNull();
    expect(await dataSource.getRepository(AuditCheckpointEntity).findOneBy({ treeSize: 200 })).toBeNull();

    const next = await t.insertEvent();
    await t.insertNode(0, 201);
    await t.insertCheckpoint(201);
    await expect(dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${next}'`)).rejects.toThrow(REFUSED('audit_log'));
    await expect(dataSource.query(`DELETE FROM ${t.tree}`)).rejects.toThrow(REFUSED('audit_tree'));
    await expect(dataSource.query(`DELETE FROM ${t.checkpoint}`)).rejects.toThrow(REFUSED('audit_checkpoint'));
  });

  it('withAuditPurge never lets an UPDATE through', async () => {
    const id = await t.insertEvent();
    const runner = dataSource.createQueryRunner();
    try {
      await expect(
        withAuditPurge(runner, async (inside) => {
          await inside.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'x' WHERE ${t.q('id')} = '${id}'`);
        }),
      ).rejects.toThrow(REFUSED('audit_log'));
      await expect(
        withAuditPurge(runner, async (inside) => {
          await inside.query(`UPDATE ${t.tree} SET ${t.q('hash')} = 'x'`);
        }),
      ).rejects.toThrow(REFUSED('audit_tree'));
      expect(runner.isTransactionActive).toBe(false);
    } finally {
      await runner.release();
    }
    expect((await t.event(id))!.reason).toBeNull();
  });

  it('a purge that throws is rolled back and leaves the guards in place', async () => {
    const id = await t.insertEvent();
    const runner = dataSource.createQueryRunner();
    try {
      await expect(
        withAuditPurge(runner, async (inside) => {
          await inside.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`);
          throw new Error('purge failed');
        }),
      ).rejects.toThrow('purge failed');
      expect(runner.isTransactionActive).toBe(false);
      // The same connection (MySQL's session variable, PostgreSQL's setting) refuses again.
      await expect(runner.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    } finally {
      await runner.release();
    }
    expect(await t.event(id)).not.toBeNull();
    await expect(dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
  });

  it('withAuditPurge inside an open transaction: a savepoint, and the guards are back for the rest of the transaction', async () => {
    const id = await t.insertEvent();
    const kept = await t.insertEvent();
    const runner = dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await withAuditPurge(runner, (inside) => inside.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`));
      await expect(runner.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${kept}'`)).rejects.toThrow(REFUSED('audit_log'));
      await runner.rollbackTransaction();
    } finally {
      await runner.release();
    }
    expect(await t.event(kept)).not.toBeNull();
  });

  it("the migration's down removes the guards, its up brings them back", async () => {
    const id = await t.insertEvent();
    await dataSource.undoLastMigration(); // AddAuditSubjectEventIndex1766448000000, the newer one
    await dataSource.undoLastMigration(); // AuditAppendOnly1766275200000
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'allowed' WHERE ${t.q('id')} = '${id}'`);
    await dataSource.query(`UPDATE ${t.tree} SET ${t.q('hash')} = '${'d'.repeat(64)}'`);
    expect((await t.event(id))!.reason).toBe('allowed');
    await dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`);
    expect(await t.event(id)).toBeNull();
    expect((await dataSource.runMigrations()).map((m) => m.name)).toEqual(['AuditAppendOnly1766275200000', 'AddAuditSubjectEventIndex1766448000000']);
    const again = await t.insertEvent();
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'x' WHERE ${t.q('id')} = '${again}'`)).rejects.toThrow(REFUSED('audit_log'));
    expect((await dataSource.driver.createSchemaBuilder().log()).upQueries).toEqual([]);
  });

  it('an administrator can drop the triggers (the guard is against the application, not the administrator)', async () => {
    const id = await t.insertEvent();
    await dataSource.query(dropTrigger(kind, 'audit_log_no_update', t.log, t.q));
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'edited by the administrator' WHERE ${t.q('id')} = '${id}'`);
    expect((await t.event(id))!.reason).toBe('edited by the administrator');
    await expect(dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
  });
});

describe.each(databases())('append-only audit tables with an entityPrefix on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await migrated(db, 'shop_');
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('guards the prefixed tables and names them in the error; the purge and down work on them', async () => {
    const t = tables(dataSource);
    expect(t.log).toContain('shop_audit_log');
    const id = await t.insertEvent();
    await t.insertCheckpoint(1);
    await expect(dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'x'`)).rejects.toThrow(REFUSED('shop_audit_log'));
    await expect(dataSource.query(`DELETE FROM ${t.checkpoint}`)).rejects.toThrow(REFUSED('shop_audit_checkpoint'));
    expect((await dataSource.driver.createSchemaBuilder().log()).upQueries).toEqual([]);
    const runner = dataSource.createQueryRunner();
    try {
      await withAuditPurge(runner, (inside) => inside.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${id}'`));
    } finally {
      await runner.release();
    }
    expect(await t.event(id)).toBeNull();
    if (kind === 'postgres') {
      // The guard function lives in the data source's schema, next to its tables.
      const schema = (db.options as { schema: string }).schema;
      const rows: Array<{ nspname: string }> = await dataSource.query(
        `SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = 'shop_audit_append_only'`,
      );
      expect(rows.map((row) => row.nspname)).toEqual([schema]);
    }
    await dataSource.undoLastMigration();
    await dataSource.query(`UPDATE ${t.log} SET ${t.q('reason')} = 'x'`);
  });
});

describe.runIf(databases().includes('postgres'))('append-only audit tables under an application role without ownership (PostgreSQL)', () => {
  const role = `audit_app_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const password = randomUUID();
  let db: TestDatabase;
  let owner: DataSource;
  let app: pg.Client | undefined;
  let schema: string;

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    schema = (db.options as { schema: string }).schema;
    owner = await migrated(db);
    const s = `"${schema}"`;
    await owner.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
    await owner.query(`GRANT USAGE ON SCHEMA ${s} TO "${role}"`);
    await owner.query(`GRANT SELECT, INSERT ON ${s}."audit_log" TO "${role}"`);
    await owner.query(`GRANT UPDATE (seq) ON ${s}."audit_log" TO "${role}"`);
    await owner.query(`GRANT SELECT, INSERT ON ${s}."audit_tree", ${s}."audit_checkpoint", ${s}."audit_subject" TO "${role}"`);
    await owner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${s}."audit_journal", ${s}."audit_instance" TO "${role}"`);
    app = new pg.Client({ ...POSTGRES, user: role, password });
    await app.connect();
    await app.query(`SET search_path TO ${s}`);
  });
  afterAll(async () => {
    await app?.end();
    await owner?.destroy();
    await db?.drop();
    const admin = new pg.Client(POSTGRES);
    await admin.connect();
    await admin.query(`DROP OWNED BY "${role}"`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS "${role}"`);
    await admin.end();
  });

  it('the role writes events and sets seq, but can neither rewrite nor delete them, nor drop or disable the triggers', async () => {
    const id = randomUUID();
    await app!.query(
      `INSERT INTO audit_log (id, occurred_at, action, outcome, kind, actor_type, source) VALUES ($1, now(), 'order.paid', 'success', 'intent', 'user', 'http')`,
      [id],
    );
    await app!.query(`UPDATE audit_log SET seq = 1 WHERE id = $1`, [id]);
    await expect(app!.query(`UPDATE audit_log SET seq = 2 WHERE id = $1`, [id])).rejects.toThrow(/audit_log is append-only/);
    await expect(app!.query(`UPDATE audit_log SET reason = 'x' WHERE id = $1`, [id])).rejects.toThrow(/permission denied for table audit_log/);
    await expect(app!.query(`DELETE FROM audit_log WHERE id = $1`, [id])).rejects.toThrow(/permission denied for table audit_log/);
    await app!.query(`INSERT INTO audit_tree (level, idx, hash) VALUES (0, 0, $1)`, ['a'.repeat(64)]);
    await expect(app!.query(`UPDATE audit_tree SET hash = 'x'`)).rejects.toThrow(/permission denied for table audit_tree/);
    await expect(app!.query(`DROP TRIGGER audit_log_no_update ON audit_log`)).rejects.toThrow(/must be owner of (table|relation) audit_log/);
    await expect(app!.query(`ALTER TABLE audit_log DISABLE TRIGGER ALL`)).rejects.toThrow(/must be owner of (table|relation) audit_log/);
    await expect(app!.query(`DROP FUNCTION audit_append_only()`)).rejects.toThrow(/must be owner of function audit_append_only/);
    await expect(app!.query(`SET session_replication_role = replica`)).rejects.toThrow(/permission denied to set parameter/);
    await expect(app!.query(`TRUNCATE audit_log`)).rejects.toThrow(/permission denied for table audit_log/);
    const [row] = (await owner.query(`SELECT seq, reason FROM "${schema}"."audit_log" WHERE id = $1`, [id])) as Array<{ seq: string; reason: string | null }>;
    expect(row).toEqual({ seq: '1', reason: null });
  });
});

describe.runIf(databases().includes('mariadb'))('append-only audit tables under an application user without TRIGGER privilege (MariaDB)', () => {
  const user = `audit_app_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const password = randomUUID();
  let db: TestDatabase;
  let owner: DataSource;
  let app: mysql.Connection | undefined;

  beforeAll(async () => {
    db = await createTestDatabase('mariadb');
    const database = (db.options as { database: string }).database;
    owner = await migrated(db);
    const d = `\`${database}\``;
    await owner.query(`CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    // The writer's INSERT … ON DUPLICATE KEY UPDATE needs UPDATE on audit_log and audit_subject: the triggers refuse real changes.
    for (const table of ['audit_log', 'audit_subject']) await owner.query(`GRANT SELECT, INSERT, UPDATE ON ${d}.${table} TO '${user}'@'%'`);
    for (const table of ['audit_tree', 'audit_checkpoint']) await owner.query(`GRANT SELECT, INSERT ON ${d}.${table} TO '${user}'@'%'`);
    for (const table of ['audit_journal', 'audit_instance']) await owner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${d}.${table} TO '${user}'@'%'`);
    app = await mysql.createConnection({ ...MARIADB, user, password, database });
  });
  afterAll(async () => {
    await app?.end();
    await owner?.query(`DROP USER IF EXISTS '${user}'@'%'`);
    await owner?.destroy();
    await db?.drop();
  });

  it('the user writes events (also the re-store upsert) and sets seq, but can neither rewrite nor delete them, nor drop the triggers', async () => {
    const id = randomUUID();
    const insert = `INSERT INTO audit_log (id, occurred_at, action, outcome, kind, actor_type, source) VALUES (?, NOW(3), 'order.paid', 'success', 'intent', 'user', 'http')`;
    await app!.query(insert, [id]);
    await app!.query(`${insert} ON DUPLICATE KEY UPDATE id = id`, [id]);
    await app!.query(`UPDATE audit_log SET seq = 1 WHERE id = ?`, [id]);
    await expect(app!.query(`UPDATE audit_log SET seq = 2 WHERE id = ?`, [id])).rejects.toThrow(/audit_log is append-only/);
    await expect(app!.query(`UPDATE audit_log SET reason = 'x' WHERE id = ?`, [id])).rejects.toThrow(/audit_log is append-only/);
    await app!.query(`INSERT INTO audit_tree (level, idx, hash) VALUES (0, 0, ?)`, ['a'.repeat(64)]);
    await expect(app!.query(`UPDATE audit_tree SET hash = 'x'`)).rejects.toThrow(/UPDATE command denied/);
    await expect(app!.query(`DELETE FROM audit_log WHERE id = ?`, [id])).rejects.toThrow(/DELETE command denied/);
    await expect(app!.query(`DROP TRIGGER audit_log_no_update`)).rejects.toThrow(/TRIGGER command denied|Access denied/);
    await expect(app!.query(`TRUNCATE audit_log`)).rejects.toThrow(/DROP command denied/);
    const [row] = (await owner.query(`SELECT seq, reason FROM audit_log WHERE id = ?`, [id])) as Array<{ seq: string; reason: string | null }>;
    expect(row).toEqual({ seq: '1', reason: null });
  });
});

describe.each(databases())('withAuditPurge on a schema made by synchronize on %s', (kind) => {
  it('deletes, and installs no guards that were not there', async () => {
    const db = await createTestDatabase(kind);
    const dataSource = new DataSource({ ...db.options, entities: [...AuditEntities], synchronize: true } as never);
    await dataSource.initialize();
    try {
      const t = tables(dataSource);
      const first = await t.insertEvent();
      const second = await t.insertEvent();
      const runner = dataSource.createQueryRunner();
      try {
        await withAuditPurge(runner, (inside) => inside.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${first}'`));
      } finally {
        await runner.release();
      }
      expect(await t.event(first)).toBeNull();
      await dataSource.query(`DELETE FROM ${t.log} WHERE ${t.q('id')} = '${second}'`);
      expect(await t.event(second)).toBeNull();
    } finally {
      await dataSource.destroy();
      await db.drop();
    }
  });
});
