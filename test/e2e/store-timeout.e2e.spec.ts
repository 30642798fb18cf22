// A database that stops answering (connections open, no bytes back) between a handler's
// commit and its response: the writer's statement never returns. The answer still comes
// within `storeTimeout` — fail-closed a 500, fail-open the handler's own — and once the
// database answers again the change is recorded once.
import { Body, Controller, Param, ParseIntPipe, Patch } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity, Audited } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { databaseBehindProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const STORE_TIMEOUT = 1_500;
let proxy: TcpProxy;

@Controller('hung')
class HungController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Updates the order (committed), then the database stops answering before the response. */
  @Patch(':id')
  @Audited('order.updated')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<{ id: number; status: string }> {
    await this.orders.update(id, { status: body.status });
    proxy.freeze();
    return { id, status: body.status };
  }
}

type Seen = { kind: 'answer'; status: number; ms: number } | { kind: 'broken'; ms: number } | { kind: 'no answer within 15 s' };

async function send(t: TestApp, path: string, init: RequestInit & { json?: unknown }): Promise<Seen> {
  const started = Date.now();
  try {
    const response = await t.request(path, { ...init, signal: AbortSignal.timeout(15_000) });
    await response.text();
    return { kind: 'answer', status: response.status, ms: Date.now() - started };
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') return { kind: 'no answer within 15 s' };
    return { kind: 'broken', ms: Date.now() - started };
  }
}

const servers = databases().filter((kind) => kind !== 'sqlite');
const cases = servers.flatMap((kind) => ADAPTERS.flatMap((adapter) => [false, true].map((failOpen) => [kind, adapter, failOpen] as const)));

describe.each(cases)('the database stops answering after the handler’s commit, on %s over %s (failOpen %s)', (kind, adapter, failOpen) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    t = await createTestApp({
      db: viaProxy,
      adapter,
      controllers: [HungController],
      audit: { failOpen, storeTimeout: STORE_TIMEOUT },
    });
  });
  afterAll(async () => {
    proxy?.thaw();
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('answers within storeTimeout, and the change is recorded once when the database answers again', { timeout: 60_000 }, async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    const requestId = `hung-${kind}-${adapter}-${failOpen}`;
    let seen: Seen;
    try {
      seen = await send(t, `/hung/${order.id}`, { method: 'PATCH', json: { status: 'paid' }, headers: { 'x-request-id': requestId } });
    } finally {
      proxy.thaw();
    }
    // Fail-open: the handler's answer; fail-closed: a 500 — either way, soon after storeTimeout.
    if (failOpen) expect(seen).toMatchObject({ kind: 'answer', status: 200 });
    else expect(seen).toMatchObject({ kind: 'answer', status: 500 });
    expect((seen as { ms: number }).ms).toBeLessThan(STORE_TIMEOUT + 5_000);
    // Afterwards: the record is there, once, and the journal is empty.
    await expect.poll(async () => (await t.rows()).filter((row) => row.requestId === requestId).length, { timeout: 20_000, interval: 250 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await t.rows()).filter((row) => row.requestId === requestId).map((row) => ({ action: row.action, outcome: row.outcome, changes: row.changes?.length }))).toEqual([
      { action: 'order.updated', outcome: 'success', changes: 1 },
    ]);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
