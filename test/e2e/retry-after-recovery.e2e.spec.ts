// A unit whose storing was left for a retry (its COMMIT's answer was lost, and the database
// was unreachable when it ended) that another instance recovered meanwhile (this one was
// taken for dead). The retry finds the unit recovered: that is its record, the retry is
// done — it must not fail every later pass of its instance, which then never recovered
// anything else (a dead instance's journal rows waited for ever).
import { randomUUID } from 'node:crypto';
import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditInstanceEntity, AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { closeGate, gate, sleep } from '../support/paused-instances.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Controller('retried')
@UseGuards(TokenGuard)
class RetriedController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Commits a change, waits (the process "pauses"), then commits a second one in a transaction. */
  @Patch(':id')
  @Audited('order.retried')
  async run(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.dataSource.getRepository(Order).update(id, { status: 'first' });
    await gate.opened;
    await this.dataSource.transaction((manager) => manager.getRepository(Order).update(id, { total: 99 }));
    return { id };
  }
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('a retried unit that another instance recovered meanwhile, on %s', (kind) => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let paused: TestApp;
  let rescuer: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    rescuer = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 1_000, shutdownTimeout: 500 } });
    const target = db.options as { host: string; port: number };
    proxy = new TcpProxy(target.host, target.port);
    const port = await proxy.start();
    // Its periodic passes every 5 s: the test runs its passes itself.
    paused = await createTestApp({
      db: { ...db, options: { ...db.options, port } as TestDatabase['options'] },
      adapter: 'express',
      controllers: [RetriedController],
      audit: { recoverAfter: 60_000, shutdownTimeout: 500 },
    });
  });
  afterAll(async () => {
    gate.open?.();
    proxy?.restore();
    await paused?.close().catch(() => undefined);
    await rescuer?.close().catch(() => undefined);
    await proxy?.stop();
    await db?.drop();
  });

  it('the retry ends, and the instance goes on recovering other rows', async () => {
    const order = await paused.seed(() => paused.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    const journal = rescuer.dataSource.getRepository(AuditJournalEntity);
    closeGate();
    const requestId = `retried-${kind}`;
    const answer = paused.request(`/retried/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);
    // Taken for dead: the rescuer recovers the first change.
    const recovery = paused.app.get(JournalRecovery);
    await rescuer.dataSource.getRepository(AuditInstanceEntity).update({ id: recovery.instanceId }, { heartbeatAt: new Date(Date.now() - 600_000) });
    await rescuer.app.get(JournalRecovery).runPass();
    expect(await journal.count()).toBe(0);

    // The second transaction's COMMIT reaches the server, its answer is lost, and the database stays unreachable a while.
    proxy.cutAfterClientSends(/COMMIT/i);
    gate.open!();
    for (let i = 0; i < 400 && proxy.cutPending; i++) await sleep(5);
    proxy.cut();
    expect((await answer).status).toBe(500);
    await sleep(300);
    proxy.restore();
    expect((await rescuer.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).total).toBe(99);

    // A dead instance's journal row, for the paused instance's passes to recover.
    const dead = randomUUID();
    const old = new Date(Date.now() - 600_000);
    await rescuer.dataSource.getRepository(AuditInstanceEntity).insert({ id: dead, startedAt: old, heartbeatAt: old });
    await journal.insert({
      id: randomUUID(),
      unitId: randomUUID(),
      instanceId: dead,
      createdAt: old,
      entry: { source: 'job', request: {}, changes: [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'a', to: 'dead-instance-change' } }, at: old.getTime() }] },
    });

    // The paused instance's passes: the first retries the unit, which finds it recovered; none fails.
    const passes: string[] = [];
    for (let i = 0; i < 3; i++) passes.push(await recovery.runPass().then(() => 'ok', (error: Error) => `${error.name}: ${error.message}`));
    expect(passes).toEqual(['ok', 'ok', 'ok']);
    const rows = await rescuer.rows();
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('dead-instance-change'))).toHaveLength(1);
    // The second change is recorded once: with the request's recovered record, or as recovery records it.
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('"to":99'))).toHaveLength(1);
    expect(await journal.count()).toBe(0);
  }, 60_000);
});
