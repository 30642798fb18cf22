import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditTreeEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { databaseBehindProxy, endsQuery, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/lost-answer';
const { privateKey } = generateKeyPairSync('ed25519');

/**
 * The integrator's batch COMMIT reaches the server and commits, but its answer is lost (the
 * connection drops). Nothing was tampered with: the events have their seq and their leaves.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('an integrator batch whose COMMIT answer is lost, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    t = await createTestApp({
      db: viaProxy,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('checkpoint() does not report a seq set back to NULL outside the integrator', async () => {
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.refunded', reason: `refund ${i}`, target: { type: 'order', id: String(i) } });
    expect(await t.dataSource.getRepository(AuditLogEntity).count()).toBe(3);
    proxy.cutAfterClientSends(endsQuery('COMMIT'), { onConnectionThatSent: /INSERT INTO\W+(?:\w+\W+)?audit_tree\W/i });
    const first = await t.audit.checkpoint().then(
      () => 'ok',
      (error: Error) => `${error.name}: ${error.message}`,
    );
    // The batch's COMMIT did go out and its answer was dropped.
    expect(proxy.cutPending).toBe(false);
    // The batch did commit: every event has its seq and one leaf.
    const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3]);
    expect(await t.dataSource.getRepository(AuditTreeEntity).count({ where: { level: 0 } })).toBe(3);
    // A lost answer is a connection failure, not tampering.
    expect(first).not.toMatch(/set back to NULL outside the integrator/);
  }, 30_000);
});
