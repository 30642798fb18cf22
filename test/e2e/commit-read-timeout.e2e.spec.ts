import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Forwards both ways; once armed, holds the server's answer to the next COMMIT for `holdMs`. */
class SlowCommitProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  armed = false;
  constructor(private readonly host: string, private readonly port: number, private readonly holdMs: number) {}
  async start(): Promise<number> {
    this.server = createServer((client) => {
      const upstream = connect(this.port, this.host);
      this.sockets.add(client).add(upstream);
      let holdUntil = 0;
      client.on('data', (chunk: Buffer) => {
        upstream.write(chunk);
        if (this.armed && /COMMIT/i.test(chunk.toString('latin1'))) {
          this.armed = false;
          holdUntil = Date.now() + this.holdMs;
        }
      });
      upstream.on('data', (chunk: Buffer) => {
        const wait = holdUntil - Date.now();
        if (wait <= 0) return void client.write(chunk);
        upstream.pause();
        setTimeout(() => {
          if (!client.destroyed) client.write(chunk);
          upstream.resume();
        }, wait);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return (this.server.address() as { port: number }).port;
  }
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * pg's `query_timeout` (a documented client option, passed through TypeORM's `extra`)
 * rejects a query whose answer is late with `Error('Query read timeout')`, without
 * cancelling it: a COMMIT that times out this way may well have committed on the server.
 */
describe.each(databases().filter((kind) => kind === 'postgres'))('a COMMIT whose answer comes after pg query_timeout, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: SlowCommitProxy;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const target = db.options as { host: string; port: number; extra?: Record<string, unknown> };
    proxy = new SlowCommitProxy(target.host, target.port, 1500);
    const port = await proxy.start();
    const options = { ...db.options, port, extra: { ...target.extra, query_timeout: 500 } } as TestDatabase['options'];
    t = await createTestApp({ db: { ...db, options }, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('committed on the server: the failed request’s event still records the change', async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 10 }));
    proxy.armed = true;
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
