import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { GatedController } from '../app/hostile-gated.controller.js';
import { Order } from '../app/order.entity.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const networked = databases().filter((kind) => kind !== 'sqlite');

/**
 * G3 across instances: instance A loses the database for longer than `recoverAfter` right
 * after a unit committed its change (journal row written, events not stored yet).
 * Instance B, which still reaches the database, takes A for dead and recovers the unit.
 * When A gets the database back, its retry of the same unit must not store it again.
 */
describe.each(networked)('an instance cut from %s while another recovers its units', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    proxy = new TcpProxy(String((db.options as { host: string }).host), Number((db.options as { port: number }).port));
    await proxy.start();
    const viaProxy = { ...db, options: { ...db.options, host: '127.0.0.1', port: proxy.port } } as TestDatabase;
    a = await createTestApp({ db: viaProxy, adapter: 'express', controllers: [GatedController], audit: { recoverAfter: 1_000 } });
    b = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 1_000 } });
  });
  afterAll(async () => {
    proxy?.restore();
    a?.app.get(GatedController).open();
    await a?.close().catch(() => undefined);
    await b?.close().catch(() => undefined);
    await proxy?.stop();
    await db?.drop();
  });

  it('one request, one event: the recovered one or the retried one, never both', async () => {
    const order = await b.seed(() => b.dataSource.getRepository(Order).save({ status: 'new', total: 5 }));
    const requestId = `hostile-partition-${kind}`;
    const journal = b.dataSource.getRepository(AuditJournalEntity);
    const log = b.dataSource.getRepository(AuditLogEntity);

    const response = a
      .request(`/hostile/gated/orders/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } })
      .then((r) => r.status, () => 'broken' as const);
    // A's change and its journal row are committed.
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);
    expect((await b.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('gated');

    // A loses the database, then its handler returns: storing fails (fail-closed: a 500).
    proxy.cut();
    a.app.get(GatedController).open();
    expect(await response).toBe(500);

    // B takes A for dead (no heartbeat for recoverAfter) and recovers the unit.
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count(), 'B recovered the unit').toBe(0);
    expect((await log.findBy({ requestId })).map((row) => [row.action, row.outcome])).toEqual([['order.gated', 'unknown']]);

    // A gets the database back and retries the unit it could not store.
    proxy.restore();
    const recovery = a.app.get(JournalRecovery);
    for (let i = 0; i < 10; i++) {
      await recovery.runPass().catch(() => undefined);
      await sleep(200);
    }

    const rows = await log.findBy({ requestId });
    expect(rows.map((row) => [row.action, row.outcome]), 'events stored for the one request').toHaveLength(1);
  });
});
