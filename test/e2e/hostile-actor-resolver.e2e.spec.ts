import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditModule } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { HostileAccount, touchingActorOptions } from '../app/hostile-account.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * The actor is resolved "when the event is built"; the journal keeps it "if resolved". An
 * actor resolver with a side effect (it notes the user's last activity) must not be run
 * inside the commit of the very transaction whose record it is resolving: there it hangs
 * the request (its own write waits on the row lock the committing transaction holds, or
 * starts yet another commit that calls it again).
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('an actor resolver that writes, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: [HostileAccount],
      auditModule: AuditModule.forRootAsync({ inject: [getDataSourceToken()], useFactory: (dataSource: DataSource) => touchingActorOptions(dataSource) }),
    });
    await t.seed(() => t.dataSource.getRepository(HostileAccount).save({ id: 1, email: 'alice@example.com', lastSeenMs: '0' }));
  });
  afterAll(async () => {
    await Promise.race([t?.close(), new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
    await db?.drop().catch(() => undefined);
  });

  it('an @Audited create answers within seconds, recorded with the resolved actor', async () => {
    let status: number | string;
    try {
      status = (await t.request('/orders', { method: 'POST', json: { total: 3 }, headers: { authorization: 'Bearer alice-token' }, signal: AbortSignal.timeout(8_000) })).status;
    } catch (error) {
      status = (error as Error).name;
    }
    expect(status).toBe(201);
    const rows = (await t.rows()).filter((row) => row.action === 'order.created');
    expect(rows.map((row) => [row.actorType, row.actorId])).toEqual([['user', '1']]);
  }, 20_000);
});
