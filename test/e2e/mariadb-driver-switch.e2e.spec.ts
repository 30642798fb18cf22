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
// event: its id, the primary key the tree's leaves, proofs and find() name it by.
describe.skipIf(!databases().includes('mariadb'))('MariaDB: the data source switches between type mysql and mariadb', () => {
  let db: TestDatabase;
  const closers: Array<() => Promise<void>> = [];

  /** Starts an app on the database with the given type; resolves with it, or with the start-up error. */
  async function start(type: 'mysql' | 'mariadb') {
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [
          TypeOrmModule.forRoot({
            ...(db.options as object),
            type,
            entities: [...AuditEntities],
            migrations: [...AuditMigrations],
            migrationsRun: true,
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

  beforeEach(async () => {
    db = await createTestDatabase('mariadb');
  });
  afterEach(async () => {
    while (closers.length) await closers.pop()!().catch(() => undefined);
    await db.drop();
  });

  it.each([
    ['mysql', 'mariadb'],
    ['mariadb', 'mysql'],
  ] as const)('events stored under type %s keep their ids after a restart with type %s', async (first, then) => {
    const before = await start(first);
    if (before instanceof Error) throw before;
    await before.get(AuditService).log({ action: 'order.noted', reason: 'one' });
    await before.get(AuditService).log({ action: 'order.noted', reason: 'two' });
    const stored = (await before.get(DataSource).getRepository(AuditLogEntity).find()).map((row) => row.id).sort();
    expect(stored).toHaveLength(2);
    await closers.pop()!();

    const after = await start(then);
    // Today: start-up fails with "Duplicate entry … for key 'PRIMARY'": synchronize dropped
    // audit_log.id to re-add it with the other type, and audit_log is left without an id column.
    if (after instanceof Error) expect.fail(`start-up with type ${then} failed: ${after.message}`);
    expect((await after.get(DataSource).getRepository(AuditLogEntity).find()).map((row) => row.id).sort()).toEqual(stored);
  }, 60_000);
});
