import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { HostileDocument } from '../app/hostile-document.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * G5/G6: one change whose values are huge although no single string in it is (a JSON
 * column holding a list of a million short strings). The application's own UPDATE fits
 * the server's packet; the audit trail must not turn it into a failed write.
 */
const ITEMS = 1_000_000;
const items = (prefix: string): string[] => Array.from({ length: ITEMS }, (_, i) => `${prefix}${i}`);

describe.each(databases().filter((kind) => kind === 'mariadb'))('one very large change on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let id: number;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: [HostileDocument] });
    id = (await t.seed(() => t.dataSource.getRepository(HostileDocument).save({ title: 'catalogue', items: items('a') }))).id;
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('an update inside a unit of work (runAs) commits, and is recorded', async () => {
    const repository = t.dataSource.getRepository(HostileDocument);
    const document = await repository.findOneByOrFail({ id });
    await expect(
      t.audit.runAs({ type: 'service', id: 'importer' }, async () => {
        document.items = items('b');
        await repository.save(document);
      }),
    ).resolves.toBeUndefined();
    expect((await repository.findOneByOrFail({ id })).items[0]).toBe('b0');
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.actorId])).toEqual([['hostileDocument.updated', 'importer']]);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  }, 120_000);

  it('the same update outside any unit of work commits, and is recorded', async () => {
    const repository = t.dataSource.getRepository(HostileDocument);
    await t.clearAudit();
    const document = await repository.findOneByOrFail({ id });
    document.items = items('c');
    await expect(repository.save(document)).resolves.toBeDefined();
    expect((await repository.findOneByOrFail({ id })).items[0]).toBe('c0');
    expect((await t.rows()).map((row) => row.action)).toEqual(['hostileDocument.updated']);
  }, 120_000);
});
