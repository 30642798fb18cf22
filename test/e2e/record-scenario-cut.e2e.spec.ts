import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { databaseBehindProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';
import { RecSController, RecSItem, RecSNestedWriter, RVB_ENTITIES } from './record-scenario-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How a client saw a response end: a status and whole body, or a broken connection. */
async function outcome(t: TestApp, path: string, init: RequestInit & { json?: unknown }): Promise<string> {
  let status: number | undefined;
  try {
    const response = await t.request(path, { ...init, signal: AbortSignal.timeout(15_000) });
    status = response.status;
    await response.text();
    return `status ${status}`;
  } catch (error) {
    return `broken after ${status}: ${String(error)}`;
  }
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('scenario: the database connection cut before the events are stored, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    t = await createTestApp({
      db: viaProxy,
      adapter: 'express',
      entities: RVB_ENTITIES,
      controllers: [RecSController],
      providers: [RecSNestedWriter],
      audit: { storeTimeout: 3_000, recoverAfter: 1_000 },
    });
  });
  afterAll(async () => {
    proxy?.restore();
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it.each([
    ['a returned result', '/recs/slow'],
    ['@Res() with res.status(201).json()', '/recs/raw/slow'],
  ])('%s: never a 2xx; the committed insert is recorded once the database is back', { timeout: 40_000 }, async (_, path) => {
    await t.clearAudit();
    const note = `cut-${path.replaceAll('/', '-')}`;
    const pending = outcome(t, path, { method: 'POST', json: { note, wait: 400 }, headers: { 'x-recs-user': '60' } });
    // The handler's insert has committed; cut the database away before it answers.
    await expect.poll(async () => (await t.dataSource.getRepository(RecSItem).countBy({ note })) === 1, { timeout: 3000, interval: 20 }).toBe(true);
    proxy.cut();
    let seen: string;
    try {
      seen = await pending;
    } finally {
      await sleep(200);
      proxy.restore();
    }
    expect(seen).not.toMatch(/^status 2/);
    await expect
      .poll(async () => (await t.rows()).flatMap((row) => row.changes ?? []).filter((c) => c.entity === 'RecSItem').length, { timeout: 15_000, interval: 250 })
      .toBe(1);
  });
});
