import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditMigrations, AuditSubjectEntity, AuditTreeEntity } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** The read side's indexes of `audit_log` after the migrations, columns in index order. */
const READ_INDEXES = {
  idx_audit_log_target: ['target_type', 'target_id', 'occurred_at', 'id'],
  idx_audit_log_actor: ['actor_type', 'actor_id', 'occurred_at', 'id'],
  idx_audit_log_action: ['action', 'occurred_at', 'id'],
  idx_audit_log_occurred_at: ['occurred_at', 'id'],
  idx_audit_log_source_outcome: ['source', 'outcome', 'occurred_at', 'id'],
  idx_audit_log_request: ['request_id', 'occurred_at', 'id'],
  idx_audit_log_actor_id: ['actor_id', 'occurred_at', 'id'],
};

describe.each(databases())('AuditMigrations on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;

  /** The indexes of `audit_log` by name, their columns in index order, as the database reports them. */
  async function logIndexes(): Promise<Record<string, string[]>> {
    if (kind === 'postgres') {
      const rows: Array<{ name: string; columns: string[] | string }> = await dataSource.query(
        `SELECT i.relname AS name, array_agg(a.attname ORDER BY k.n) AS columns
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace s ON s.oid = t.relnamespace
           CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
          WHERE t.relname = 'audit_log' AND s.nspname = $1 GROUP BY i.relname`,
        [dataSource.driver.schema],
      );
      return Object.fromEntries(rows.map((row) => [row.name, Array.isArray(row.columns) ? row.columns : row.columns.replace(/^\{|\}$/g, '').split(',')]));
    }
    if (kind === 'mariadb') {
      const rows: Array<{ name: string; column: string }> = await dataSource.query(
        `SELECT INDEX_NAME AS name, COLUMN_NAME AS \`column\` FROM information_schema.STATISTICS
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'audit_log' ORDER BY INDEX_NAME, SEQ_IN_INDEX`,
      );
      const indexes: Record<string, string[]> = {};
      for (const row of rows) (indexes[row.name] ??= []).push(row.column);
      return indexes;
    }
    const names: Array<{ name: string }> = await dataSource.query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'`);
    const indexes: Record<string, string[]> = {};
    for (const { name } of names) {
      const columns: Array<{ name: string }> = await dataSource.query(`SELECT name FROM pragma_index_info(?) ORDER BY seqno`, [name]);
      indexes[name] = columns.map((column) => column.name);
    }
    return indexes;
  }

  const indexOid = async (name: string): Promise<number | undefined> =>
    (await dataSource.query(`SELECT c.oid::int AS oid FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relname = $1 AND s.nspname = $2`, [name, dataSource.driver.schema]))[0]?.oid;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = new DataSource({ ...db.options, entities: [...AuditEntities], migrations: AuditMigrations } as never);
    await dataSource.initialize();
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('creates a table that matches AuditLogEntity exactly (synchronize would change nothing)', async () => {
    const applied = await dataSource.runMigrations();
    expect(applied.map((m) => m.name)).toEqual(['CreateAuditLog1764201600000', 'CreateAuditJournal1764979200000', 'CreateAuditSubject1765584000000', 'AddAuditIntegrity1766188800000', 'AuditAppendOnly1766275200000', 'AuditReadIndexes1766361600000', 'AddAuditSubjectEventIndex1766448000000', 'AddAuditRequestActorIndexes1767312000000', 'AddAuditTreeEventIndex1796601600000']);
    const pending = await dataSource.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((q) => q.query)).toEqual([]);
  });

  it('creates the read indexes, each ending with (occurred_at, id), the order find() pages in', async () => {
    expect(await logIndexes()).toMatchObject(READ_INDEXES);
  });

  it('reverts the read indexes to their earlier columns, and upgrades them again', async () => {
    await dataSource.undoLastMigration(); // the tree's leaf index, newer
    await dataSource.undoLastMigration(); // the request and actor id indexes, newer
    await dataSource.undoLastMigration(); // the subject index, newer
    await dataSource.undoLastMigration();
    const earlier = await logIndexes();
    expect(earlier).toMatchObject({
      idx_audit_log_target: ['target_type', 'target_id', 'occurred_at'],
      idx_audit_log_actor: ['actor_type', 'actor_id', 'occurred_at'],
      idx_audit_log_action: ['action', 'occurred_at'],
      idx_audit_log_occurred_at: ['occurred_at'],
    });
    expect(earlier).not.toHaveProperty('idx_audit_log_source_outcome');
    expect(earlier).not.toHaveProperty('idx_audit_log_request');
    expect(earlier).not.toHaveProperty('idx_audit_log_actor_id');
    // One index built beforehand with the wanted columns (as CREATE INDEX CONCURRENTLY would): kept, not rebuilt.
    const q = (name: string): string => dataSource.driver.escape(name);
    const table = kind === 'postgres' ? `${q(String(dataSource.driver.schema))}.${q('audit_log')}` : q('audit_log');
    await dataSource.query(`CREATE INDEX ${q('idx_audit_log_source_outcome')} ON ${table} (${['source', 'outcome', 'occurred_at', 'id'].map(q).join(', ')})`);
    const prebuilt = kind === 'postgres' ? await indexOid('idx_audit_log_source_outcome') : undefined;
    const replaced = kind === 'postgres' ? await indexOid('idx_audit_log_actor') : undefined;
    expect((await dataSource.runMigrations()).map((m) => m.name)).toEqual(['AuditReadIndexes1766361600000', 'AddAuditSubjectEventIndex1766448000000', 'AddAuditRequestActorIndexes1767312000000', 'AddAuditTreeEventIndex1796601600000']);
    expect(await logIndexes()).toMatchObject(READ_INDEXES);
    if (kind === 'postgres') {
      expect(await indexOid('idx_audit_log_source_outcome')).toBe(prebuilt);
      expect(await indexOid('idx_audit_log_actor')).not.toBe(replaced);
    }
    expect((await dataSource.driver.createSchemaBuilder().log()).upQueries.map((query) => query.query)).toEqual([]);
  });

  it('creates the subject index: one row per event and instance, read in time order', async () => {
    const runner = dataSource.createQueryRunner();
    const table = await runner.getTable(dataSource.getMetadata(AuditSubjectEntity).tablePath);
    await runner.release();
    expect(table!.primaryColumns.map((column) => column.name).sort()).toEqual(['event_id', 'subject_id', 'subject_type']);
    const indexes = Object.fromEntries(table!.indices.map((index) => [index.name, [...index.columnNames].sort()]));
    expect(indexes['idx_audit_subject_history']).toEqual(['event_id', 'occurred_at', 'subject_id', 'subject_type']);
    expect(indexes['idx_audit_subject_event']).toEqual(['event_id']);
    if (kind === 'postgres') {
      const [{ indexdef }] = await dataSource.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_audit_subject_history' AND schemaname = $1`, [dataSource.driver.schema]);
      expect(indexdef).toMatch(/\(subject_type, subject_id, occurred_at, event_id\)/);
    }
  });

  it('creates the unique index of the tree leaves by event: a second leaf naming an event is refused', async () => {
    const runner = dataSource.createQueryRunner();
    const table = await runner.getTable(dataSource.getMetadata(AuditTreeEntity).tablePath);
    await runner.release();
    const index = table!.indices.find((candidate) => candidate.name === 'idx_audit_tree_event');
    expect(index).toMatchObject({ columnNames: ['event_id'], isUnique: true });
    const tree = dataSource.getRepository(AuditTreeEntity);
    const eventId = '0190a4a2-0000-7000-8000-000000000001';
    await tree.insert([
      { level: 0, index: 0, hash: 'a'.repeat(64), eventId },
      { level: 1, index: 0, hash: 'b'.repeat(64), eventId: null },
      { level: 1, index: 1, hash: 'c'.repeat(64), eventId: null },
    ]);
    await expect(tree.insert({ level: 0, index: 1, hash: 'd'.repeat(64), eventId })).rejects.toThrow();
  });

  it('reverts cleanly', async () => {
    for (let i = 0; i < AuditMigrations.length; i++) await dataSource.undoLastMigration();
    const runner = dataSource.createQueryRunner();
    for (const entity of AuditEntities) expect(await runner.hasTable(dataSource.getMetadata(entity).tablePath)).toBe(false);
    await runner.release();
  });
});

describe('AuditMigrations with an entityPrefix', () => {
  it('creates the prefixed table the entity maps to', async () => {
    const dataSource = new DataSource({
      type: 'better-sqlite3',
      database: ':memory:',
      entityPrefix: 'shop_',
      entities: [...AuditEntities],
      migrations: AuditMigrations,
    });
    await dataSource.initialize();
    await dataSource.runMigrations();
    expect(dataSource.getMetadata(AuditLogEntity).tableName).toBe('shop_audit_log');
    expect((await dataSource.driver.createSchemaBuilder().log()).upQueries).toEqual([]);
    await dataSource.destroy();
  });
});

describe.each(databases())('AuditMigrations over a schema synchronize made, on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // An app that started with `synchronize: true`, then adopts the migrations (for the append-only guards).
    dataSource = await new DataSource({ ...db.options, entities: [...AuditEntities], migrations: AuditMigrations, synchronize: true } as never).initialize();
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('all run, install the guards, and leave synchronize nothing to change', async () => {
    expect((await dataSource.runMigrations()).map((m) => m.name)).toEqual(AuditMigrations.map((m) => new m().name));
    const log = dataSource.driver.escape('audit_log');
    await dataSource.getRepository(AuditLogEntity).insert({
      id: '01a24b00-f80b-7110-9218-2d2ac9c018b0',
      occurredAt: new Date(),
      action: 'order.noted',
      outcome: 'success',
      kind: 'intent',
      actorType: 'system',
      source: 'system',
    });
    await expect(dataSource.query(`UPDATE ${log} SET ${dataSource.driver.escape('reason')} = 'rewritten'`)).rejects.toThrow();
    await expect(dataSource.query(`DELETE FROM ${log}`)).rejects.toThrow();
    const pending = await dataSource.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((q) => q.query)).toEqual([]);
    if (kind !== 'mariadb') {
      const table = await dataSource.createQueryRunner().getTable('audit_log');
      expect(table?.indices.map((index) => index.name)).toContain('idx_audit_log_unsequenced');
    }
  });
});
