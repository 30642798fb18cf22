import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const servers = databases().filter((kind) => kind !== 'sqlite');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The connection drops while a COMMIT is on its way: the server may have committed, the
 * app only sees an error. Whether it did is read from the journal when the unit is stored,
 * so the change is recorded once if it committed, and not at all if it did not.
 */
describe.each(servers)('a COMMIT whose answer is lost, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const target = db.options as { host: string; port: number };
    proxy = new TcpProxy(target.host, target.port);
    const port = await proxy.start();
    t = await createTestApp({ db: { ...db, options: { ...db.options, port } as TestDatabase['options'] }, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('committed on the server: the failed request’s event records the change, once; the journal ends empty', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    proxy.cutAfterClientSends(/COMMIT/i);
    const response = await t.request(`/orders/${order.id}`, {
      method: 'PATCH',
      json: { status: 'shipped' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': `lost-ack-${kind}` },
    });
    expect(response.status).toBe(500);
    // The server did commit it.
    expect((await t.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('shipped');

    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && ((await t.rows()).length === 0 || (await journal.count()) > 0); i++) await sleep(100);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome, row.requestId])).toEqual([['order.updated', 'intent', 'failure', `lost-ack-${kind}`]]);
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'shipped' } } }]);
    expect(await journal.count()).toBe(0);
  });
});
