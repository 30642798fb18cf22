import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const servers = databases().filter((kind) => kind !== 'sqlite');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A database slower than `sequenceEvery`: one pass of the integrator (even one with
 * nothing to sequence) takes several round trips, far longer than the 10 ms between
 * ticks. Ticks that come while a pass runs must not pile up behind it, or `checkpoint()`
 * (which runs after them) waits for every one of them, and the backlog grows without end.
 */
describe.each(servers)('integrity on a database slower than sequenceEvery, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const target = db.options as { host: string; port: number };
    proxy = new TcpProxy(target.host, target.port);
    const port = await proxy.start();
    t = await createTestApp({
      db: { ...db, options: { ...db.options, port } as TestDatabase['options'] },
      adapter: 'express',
      audit: {
        integrity: { signingKey: generateKeyPairSync('ed25519').privateKey, origin: 'audit.test/slow', sequenceEvery: 10, checkpointEvery: { events: 1_000 } },
      },
    });
  });
  afterAll(async () => {
    proxy?.setLatency(0);
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('checkpoint() waits for at most the pass in progress, not for every tick that came meanwhile', async () => {
    await Promise.all(Array.from({ length: 5 }, (_, i) => t.audit.log({ action: 'order.noted', reason: `slow ${i}` })));
    proxy.setLatency(25);
    // 200 ticks come in these 2 s; a pass takes hundreds of ms.
    await sleep(2_000);
    const started = Date.now();
    const checkpoint = await Promise.race([t.audit.checkpoint(), sleep(15_000).then(() => undefined)]);
    const took = Date.now() - started;
    proxy.setLatency(0);
    expect(checkpoint, `checkpoint() had not returned after ${took} ms`).toBeDefined();
    expect(took).toBeLessThan(10_000);
    expect(checkpoint!.treeSize).toBe(await t.dataSource.getRepository(AuditLogEntity).count());
  }, 30_000);
});
