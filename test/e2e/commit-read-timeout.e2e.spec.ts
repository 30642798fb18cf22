import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { databaseBehindProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * pg's `query_timeout` (a documented client option, passed through TypeORM's `extra`)
 * rejects a query whose answer is late with `Error('Query read timeout')`, without
 * cancelling it: a COMMIT that times out this way may well have committed on the server.
 */
describe.each(databases().filter((kind) => kind === 'postgres'))('a COMMIT whose answer comes after pg query_timeout, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    const { extra } = viaProxy.options as { extra?: Record<string, unknown> };
    const options = { ...viaProxy.options, extra: { ...extra, query_timeout: 500 } } as TestDatabase['options'];
    t = await createTestApp({ db: { ...viaProxy, options }, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('committed on the server: the failed request’s event still records the change', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    proxy.holdReplyAfterClientSends(/COMMIT/i, 1500);
    const response = await t.request(`/orders/${order.id}`, {
      method: 'PATCH',
      json: { status: 'shipped' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': `read-timeout-${kind}` },
    });
    expect(response.status).toBe(500);
    await sleep(2000);
    // The server did commit it.
    expect((await t.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('shipped');

    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && ((await t.rows()).length === 0 || (await journal.count()) > 0); i++) await sleep(100);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.outcome, row.requestId])).toEqual([['order.updated', 'intent', 'failure', `read-timeout-${kind}`]]);
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'shipped' } } }]);
  }, 30_000);
});
