import { afterEach } from 'vitest';
import { createTestApp, type TestApp, type TestAppOptions } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/**
 * A test database and the apps started on it, per test: after each test the apps still
 * open are closed and the database is dropped. Call once in a `describe`.
 */
export function appsPerTest(): {
  /** The current test's database (created by `database()`). */
  readonly db: TestDatabase;
  database(kind: TestDatabase['kind']): Promise<TestDatabase>;
  /** Starts an app on the current test's database. */
  start(options: Omit<TestAppOptions, 'db'>): Promise<TestApp>;
  /** Closes `app` now (the test goes on without it). */
  close(app: TestApp): Promise<void>;
} {
  let db: TestDatabase | undefined;
  const apps: TestApp[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await db?.drop();
    db = undefined;
  });
  return {
    get db(): TestDatabase {
      if (!db) throw new Error('appsPerTest: call database(kind) first');
      return db;
    },
    async database(kind) {
      db = await createTestDatabase(kind);
      return db;
    },
    async start(options) {
      const app = await createTestApp({ ...options, db: this.db });
      apps.push(app);
      return app;
    },
    async close(app) {
      const at = apps.indexOf(app);
      if (at >= 0) apps.splice(at, 1);
      await app.close();
    },
  };
}
