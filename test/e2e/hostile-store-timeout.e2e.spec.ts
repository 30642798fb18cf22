// Units stored at the same time share one storeTimeout timer: each must still be answered
// storeTimeout after its own start, not when another unit's time is up, nor later.
import { Controller, Param, ParseIntPipe, Patch, Post } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { databaseBehindProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const STORE_TIMEOUT = 1_500;
let proxy: TcpProxy;

@Controller('staggered')
class StaggeredController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Updates the order (committed), then the database stops answering before the response. */
  @Patch(':id')
  @Audited('order.updated')
  async update(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update(id, { status: 'paid' });
    proxy.freeze();
    return { id };
  }

  /** Writes nothing: its event is stored while the database does not answer. */
  @Post('noted')
  @Audited('order.noted')
  noted(): { ok: true } {
    return { ok: true };
  }
}

const timed = async (t: TestApp, path: string, method: string): Promise<{ status: number; ms: number }> => {
  const started = Date.now();
  const response = await t.request(path, { method, signal: AbortSignal.timeout(15_000) });
  await response.text();
  return { status: response.status, ms: Date.now() - started };
};

describe.each(databases().filter((kind) => kind !== 'sqlite'))('units stored at once while the database does not answer, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    t = await createTestApp({
      db: viaProxy,
      adapter: 'express',
      controllers: [StaggeredController],
      audit: { failOpen: false, storeTimeout: STORE_TIMEOUT },
    });
  });
  afterAll(async () => {
    proxy?.thaw();
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('a unit started later times out storeTimeout after its own start, not with the earlier one', { timeout: 60_000 }, async () => {
    const order = await t.seed(() => t.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    try {
      const first = timed(t, `/staggered/${order.id}`, 'PATCH');
      await new Promise((resolve) => setTimeout(resolve, 900));
      const second = timed(t, '/staggered/noted', 'POST');
      const answers = await Promise.all([first, second]);
      for (const answer of answers) {
        expect(answer.status).toBe(500);
        expect(answer.ms).toBeGreaterThanOrEqual(STORE_TIMEOUT - 50);
        expect(answer.ms).toBeLessThan(STORE_TIMEOUT + 700);
      }
    } finally {
      proxy.thaw();
    }
  });
});
