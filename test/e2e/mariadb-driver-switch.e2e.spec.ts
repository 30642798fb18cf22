import 'reflect-metadata';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditEntities, AuditLogEntity, AuditMigrations, AuditModule, AuditService } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// An app on MariaDB whose data source changes type between `mysql` and `mariadb`, with
// AuditMigrations and synchronize (as the README's quick start has them). The module warns
// on type 'mysql' and says to use type 'mariadb'; the README says it synchronizes the audit
// tables as type 'mariadb' would. Switching as the warning says (or back) keeps every stored
// event: its id, the primary key the tree's leaves, proofs and find() name it by. TypeORM maps
// an entity's `uuid` column to MariaDB's native `uuid` under type 'mariadb' (10.7+) and to
// text under type 'mysql'; the module's tables keep the representation they were made with.
describe.skipIf(!databases().includes('mariadb'))('MariaDB: the data source switches between type mysql and mariadb', () => {
  let db: TestDatabase;
  const closers: Array<() => Promise<void>> = [];

  /** Starts an app on the database with the given type; resolves with it, or with the start-up error. */
  async function start(type: 'mysql' | 'mariadb', migrations: readonly unknown[] = AuditMigrations) {
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [
          TypeOrmModule.forRoot({
            ...(db.options as object),
            type,
            entities: [...AuditEntities],
            migrations: [...migrations],
            migrationsRun: migrations.length > 0,
            synchronize: true,
            retryAttempts: 0,
          } as never),
          AuditModule.forRoot(),
        ],
      }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      closers.push(() => app.close());
      await app.init();
      return app;
    } catch (error) {
      return error as Error;
    }
  }

  /** `table.column: COLUMN_TYPE` of every column the module's entities declare as `uuid`. */
  async function uuidColumns(dataSource: DataSource): Promise<Record<string, string>> {
    const declared = dataSource.entityMetadatas
      .filter((metadata) => (AuditEntities as readonly unknown[]).includes(metadata.target))
      .flatMap((metadata) => metadata.columns.filter((column) => column.type === 'uuid').map((column) => `${metadata.tableName}.${column.databaseName}`));
    const rows = (await dataSource.query(
      `SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS name, COLUMN_TYPE AS type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()`,
    )) as Array<{ name: string; type: string }>;
    return Object.fromEntries(declared.sort().map((name) => [name, rows.find((row) => row.name === name)?.type ?? 'missing']));
  }

  beforeEach(async () => {
    db = await createTestDatabase('mariadb');
  });
  afterEach(async () => {
    while (closers.length) await closers.pop()!().catch(() => undefined);
    await db.drop();
  });

  it.each([
    ['mysql', 'mariadb', 'migrations', AuditMigrations],
    ['mariadb', 'mysql', 'migrations', AuditMigrations],
    ['mysql', 'mariadb', 'synchronize alone', []],
    ['mariadb', 'mysql', 'synchronize alone', []],
  ] as const)('events stored under type %s keep their ids after a restart with type %s (%s)', async (first, then, _how, migrations) => {
    const before = await start(first, migrations);
    if (before instanceof Error) throw before;
    await before.get(AuditService).log({ action: 'order.noted', reason: 'one' });
    await before.get(AuditService).log({ action: 'order.noted', reason: 'two' });
    const stored = (await before.get(DataSource).getRepository(AuditLogEntity).find()).map((row) => row.id).sort();
    expect(stored).toHaveLength(2);
    const columns = await uuidColumns(before.get(DataSource));
    await closers.pop()!();

    const after = await start(then, migrations);
    // Before the fix: start-up failed with "Duplicate entry … for key 'PRIMARY'": synchronize dropped
    // audit_log.id to re-add it with the other type, and audit_log was left without an id column.
    if (after instanceof Error) expect.fail(`start-up with type ${then} failed: ${after.message}`);
    expect((await after.get(DataSource).getRepository(AuditLogEntity).find()).map((row) => row.id).sort()).toEqual(stored);
    expect(await uuidColumns(after.get(DataSource))).toEqual(columns);
    await after.get(AuditService).log({ action: 'order.noted', reason: 'three' });
    expect(await after.get(DataSource).getRepository(AuditLogEntity).count()).toBe(3);
    await closers.pop()!();

    // And back again.
    const again = await start(first, migrations);
    if (again instanceof Error) expect.fail(`start-up with type ${first} again failed: ${again.message}`);
    expect(await again.get(DataSource).getRepository(AuditLogEntity).count()).toBe(3);
    expect(await uuidColumns(again.get(DataSource))).toEqual(columns);
  }, 60_000);

  it.each([
    ['mysql', 'varchar(255)'],
    ['mariadb', 'uuid'],
  ] as const)('a fresh database started with type %s gets one representation for every uuid column (%s)', async (type, expected) => {
    const app = await start(type);
    if (app instanceof Error) throw app;
    const columns = await uuidColumns(app.get(DataSource));
    expect(Object.keys(columns).length).toBeGreaterThan(5);
    expect(new Set(Object.values(columns))).toEqual(new Set([expected]));
  }, 60_000);

  it('tables a newer migration creates under type mariadb follow audit_log made under type mysql', async () => {
    // An older release's schema: audit_log alone, made by its migration under type mysql.
    const older = new DataSource({ ...(db.options as object), type: 'mysql', migrations: AuditMigrations.slice(0, 1) } as never);
    await older.initialize();
    await older.runMigrations();
    await older.query(
      `INSERT INTO audit_log (id, occurred_at, action, outcome, kind, actor_type, source) VALUES ('0b0e3b7c-4a8e-4c52-9a55-1f4f3c3b8a01', NOW(3), 'order.noted', 'success', 'intent', 'system', 'system')`,
    );
    await older.destroy();

    const newer = await start('mariadb');
    if (newer instanceof Error) expect.fail(`start-up with type mariadb failed: ${newer.message}`);
    expect(await newer.get(DataSource).getRepository(AuditLogEntity).count()).toBe(1);
    expect(new Set(Object.values(await uuidColumns(newer.get(DataSource))))).toEqual(new Set(['varchar(255)']));
  }, 60_000);
});
