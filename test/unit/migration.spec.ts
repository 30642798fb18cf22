import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditMigrations, AuditSubjectEntity } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

describe.each(databases())('AuditMigrations on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;

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
    expect(applied.map((m) => m.name)).toEqual(['CreateAuditLog1764201600000', 'CreateAuditJournal1764979200000', 'CreateAuditSubject1765584000000', 'AddAuditIntegrity1766188800000', 'AuditAppendOnly1766275200000', 'AddAuditSubjectEventIndex1766448000000']);
    const pending = await dataSource.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((q) => q.query)).toEqual([]);
  });

  it('creates the indexes for target history and actor activity', async () => {
    const runner = dataSource.createQueryRunner();
    const table = await runner.getTable(dataSource.getMetadata(AuditLogEntity).tablePath);
    await runner.release();
    // (TypeORM reads PostgreSQL index columns back in table order, so compare as sets.)
    const indexes = Object.fromEntries(table!.indices.map((index) => [index.name, [...index.columnNames].sort()]));
    expect(indexes['idx_audit_log_target']).toEqual(['occurred_at', 'target_id', 'target_type']);
    expect(indexes['idx_audit_log_actor']).toEqual(['actor_id', 'actor_type', 'occurred_at']);
    const subjects = await dataSource.createQueryRunner().getTable(dataSource.getMetadata(AuditSubjectEntity).tablePath);
    expect(subjects!.indices.find((index) => index.name === 'idx_audit_subject_event')?.columnNames).toEqual(['event_id']);
    if (kind === 'postgres') {
      const [{ indexdef }] = await dataSource.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_audit_log_target'`);
      expect(indexdef).toMatch(/\(target_type, target_id, occurred_at\)/);
    }
  });

  it('creates the subject index: one row per event and instance, read in time order', async () => {
    const runner = dataSource.createQueryRunner();
    const table = await runner.getTable(dataSource.getMetadata(AuditSubjectEntity).tablePath);
    await runner.release();
    expect(table!.primaryColumns.map((column) => column.name).sort()).toEqual(['event_id', 'subject_id', 'subject_type']);
    const indexes = Object.fromEntries(table!.indices.map((index) => [index.name, [...index.columnNames].sort()]));
    expect(indexes['idx_audit_subject_history']).toEqual(['event_id', 'occurred_at', 'subject_id', 'subject_type']);
    if (kind === 'postgres') {
      const [{ indexdef }] = await dataSource.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_audit_subject_history'`);
      expect(indexdef).toMatch(/\(subject_type, subject_id, occurred_at, event_id\)/);
    }
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
