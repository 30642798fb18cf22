import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource, type Logger as TypeOrmLogger } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditModule, AuditService } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** Counts the INSERT statements TypeORM sends to audit_log. */
class InsertCounter implements TypeOrmLogger {
  inserts = 0;
  logQuery(query: string): void {
    if (/^INSERT INTO .*audit_log/i.test(query)) this.inserts++;
  }
  logQueryError(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
}

describe.each(databases())('AuditWriter on %s', (kind) => {
  let db: TestDatabase;
  const counter = new InsertCounter();
  let close: () => Promise<void>;
  let audit: AuditService;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ ...db.options, autoLoadEntities: true, synchronize: true, logging: ['query'], logger: counter } as never),
        AuditModule.forRoot(),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    close = () => app.close();
    audit = app.get(AuditService);
    dataSource = app.get(DataSource);
  });
  afterAll(async () => {
    await close?.();
    await db?.drop();
  });

  it('groups concurrent writes into a few INSERTs, and every caller waits for its own row', async () => {
    counter.inserts = 0;
    const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => audit.log({ action: 'load.tested', context: { i } })));
    // Each log() resolved only after its row was stored:
    const stored = await dataSource.getRepository(AuditLogEntity).count();
    expect(stored).toBe(300);
    expect(new Set(ids).size).toBe(300);
    expect(counter.inserts).toBeGreaterThan(0);
    expect(counter.inserts).toBeLessThanOrEqual(60);
  });
});
