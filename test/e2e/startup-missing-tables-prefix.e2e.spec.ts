import 'reflect-metadata';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity, AuditLogEntity, AuditModule } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// The start-up error names the tables missing from a data source that lists only some of
// AuditEntities; with TypeORM's entityPrefix, the tables the app would have are prefixed.
describe.each(databases())('start-up error names the missing tables, entityPrefix on %s', (kind) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('names rv_audit_tree (the table of the app), not audit_tree', async () => {
    const error = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ ...db.options, entityPrefix: 'rv_', entities: [AuditLogEntity, AuditJournalEntity], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        AuditModule.forRoot(),
      ],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        try {
          await app.init();
        } finally {
          await app.close();
        }
      })
      .catch((e: unknown) => e);
    const message = (error as Error).message;
    expect(message).toContain('missing tables');
    expect(message.slice(message.indexOf('(missing'))).toBe('(missing tables: rv_audit_subject, rv_audit_instance, rv_audit_tree, rv_audit_checkpoint)');
    for (const table of ['rv_audit_subject', 'rv_audit_instance', 'rv_audit_tree', 'rv_audit_checkpoint']) expect(message).toContain(table);
  });
});
