import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditMigrations } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

// AuditMigrations adopted over a schema synchronize made, with a table prefix: first start
// with synchronize only, then with the migrations; then undo them one by one and redo them.
describe.each(databases())('migrations over a synchronize-made schema with entityPrefix on %s', (kind) => {
  let db: TestDatabase;
  let prefixed: TestDatabase;
  let app: TestApp | undefined;
  const { privateKey } = generateKeyPairSync('ed25519');
  const integrity = { signingKey: privateKey, origin: 'audit.test/rv-migrations' };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    prefixed = { ...db, options: { ...db.options, entityPrefix: 'rv_', ...(kind === 'sqlite' ? { database: `/tmp/rv-mig-${Date.now()}.sqlite` } : {}) } as TestDatabase['options'] };
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('synchronize, then migrations (twice), then down and up again: events kept and recorded', async () => {
    app = await createTestApp({ db: prefixed, adapter: 'express', migrations: [], audit: { integrity } });
    await app.audit.log({ action: 'rv.one' });
    await app.audit.checkpoint();
    await app.close();
    app = undefined;

    for (let run = 0; run < 2; run++) {
      app = await createTestApp({ db: prefixed, adapter: 'express', migrations: AuditMigrations, synchronize: false, audit: { integrity } });
      await app.audit.log({ action: `rv.after-${run}` });
      await app.audit.checkpoint();
      expect((await app.audit.verify()).problems).toEqual([]);
      await app.close();
      app = undefined;
    }
    app = await createTestApp({ db: prefixed, adapter: 'express', migrations: AuditMigrations, synchronize: false, audit: { integrity } });
    // Undo the last two migrations, then redo them.
    for (let i = 0; i < 2; i++) {
      await app.dataSource.undoLastMigration();
    }
    expect(await app.dataSource.runMigrations()).toHaveLength(2);
    await app.audit.log({ action: 'rv.after-redo' });
    expect((await app.rows()).map((row) => row.action)).toEqual(['rv.one', 'rv.after-0', 'rv.after-1', 'rv.after-redo']);
  });
});
