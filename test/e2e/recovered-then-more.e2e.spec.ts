// A unit taken for dead while it runs (its instance paused past recoverAfter): what it
// commits after another instance recovered its first change is recorded too, once —
// also when its changes net out (no events of its own), and when they were all spilled.
import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditInstanceEntity, AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { closeGate, gate, journaled, pausedInstances, sleep, takeForDead } from '../support/paused-instances.js';
import { databases } from '../support/test-database.js';

@Controller('resumed')
@UseGuards(TokenGuard)
class ResumedController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Commits a change, waits (the process "pauses"), then commits a second change. */
  @Patch('orders/:id')
  @Audited('order.two-step', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async twoStep(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.dataSource.getRepository(Order).update(id, { total: 77 });
    await gate.opened;
    await this.dataSource.getRepository(Order).update(id, { status: 'shipped-after-resume' });
    return { id };
  }

  /** Not audited: 1 -> 77, the gate, 77 -> 1 — the unit's net changes are none, so it has no events of its own. */
  @Patch('netted/:id')
  async netted(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.dataSource.getRepository(Order).update(id, { total: 77 });
    await gate.opened;
    await this.dataSource.getRepository(Order).update(id, { total: 1 });
    return { id };
  }

  /** One transaction of 15 inserts (over the memory bound: spilled to the journal), then the gate. */
  @Patch('bulk')
  @Audited('order.bulk-created')
  async bulk(): Promise<{ ok: true }> {
    await this.dataSource.transaction((manager) => manager.getRepository(Order).save(Array.from({ length: 15 }, (_, i) => ({ status: `bulk-${i}`, total: i }))));
    await gate.opened;
    return { ok: true };
  }

  /** Spilled changes before the gate, and as many after it. */
  @Patch('bulk-twice')
  @Audited('order.bulk-twice')
  async bulkTwice(): Promise<{ ok: true }> {
    const save = (prefix: string) =>
      this.dataSource.transaction((manager) => manager.getRepository(Order).save(Array.from({ length: 15 }, (_, i) => ({ status: `${prefix}-${i}`, total: i }))));
    await save('before');
    await gate.opened;
    await save('after');
    return { ok: true };
  }
}

describe.each(databases())('a unit recovered while paused that commits more after resuming, on %s', (kind) => {
  const instances = pausedInstances(kind);

  // Whether the rescuer ran a pass of its own before the unit resumed: finding no rows left
  // of the paused instance, it removes its lease, and what the instance writes next has none.
  it.each([
    [false, false],
    [true, false],
    [false, true],
  ])('keeps a record of the change committed after the recovery, at once (failOpen %s, lease removed meanwhile %s)', async (failOpen, leaseRemoved) => {
    const app = await instances.start({ controllers: [ResumedController], audit: { failOpen } });
    const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    closeGate();
    const requestId = `resumed-two-step-${kind}-${failOpen}-${leaseRemoved}`;
    const answer = app.request(`/resumed/orders/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    expect(await journaled(app)).toBe(1);
    // Taken for dead: the rescuer recovers the first change.
    await takeForDead(app, instances.rescuer());
    const journal = app.dataSource.getRepository(AuditJournalEntity);
    expect(await journal.count()).toBe(0);
    if (leaseRemoved) {
      await instances.rescuer().app.get(JournalRecovery).runPass();
      expect(await app.dataSource.getRepository(AuditInstanceEntity).countBy({ id: app.app.get(JournalRecovery).instanceId })).toBe(0);
    }

    gate.open!();
    // The unit's own record cannot be stored (its first change was recovered elsewhere): not a 2xx unless fail-open.
    expect((await answer).status).toBe(failOpen ? 200 : 500);
    // The second change is committed in the database...
    expect((await app.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('shipped-after-resume');
    // ...and recorded, once, before the answer: the unit recovers what it wrote since the recovery (no pass, no wait).
    const rows = await app.rows();
    const resumed = rows.filter((row) => JSON.stringify(row.changes ?? []).includes('shipped-after-resume'));
    expect(resumed.map((row) => [row.requestId, row.action, row.outcome])).toEqual([[requestId, 'order.two-step', 'unknown']]);
    expect(await journal.count()).toBe(0);
    // Nothing more for recovery to find.
    await instances.rescuer().app.get(JournalRecovery).runPass();
    expect((await app.rows()).filter((row) => JSON.stringify(row.changes ?? []).includes('shipped-after-resume'))).toHaveLength(1);
  });

  it('records the change back to 1 of a unit whose changes net out, committed after the recovery (fail-closed)', async () => {
    const app = await instances.start({ controllers: [ResumedController] });
    const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    closeGate();
    const answer = app.request(`/resumed/netted/${order.id}`, { method: 'PATCH', headers: { authorization: 'Bearer alice-token' } });
    expect(await journaled(app)).toBe(1);
    await takeForDead(app, instances.rescuer());
    const journal = app.dataSource.getRepository(AuditJournalEntity);
    expect(await journal.count()).toBe(0);

    gate.open!();
    expect((await answer).status).toBe(500);
    expect((await app.dataSource.getRepository(Order).findOneByOrFail({ id: order.id })).total).toBe(1);
    // Recorded before the answer: the unit recovers the row it left (no pass, no wait).
    const changes = (await app.rows()).filter((row) => row.targetId === String(order.id) || JSON.stringify(row.changes ?? []).includes('"total"')).map((row) => row.changes);
    // The trail does not end at total = 77 while the database says 1.
    expect(JSON.stringify(changes)).toMatch(/"from":77,"to":1/);
    expect(await journal.count()).toBe(0);
  });

  it('a unit whose journal rows were all spilled, recovered while paused, is recorded once', async () => {
    // 2 changes per event: the unit keeps at most 10 in memory, the rest only in the journal.
    const app = await instances.start({ controllers: [ResumedController], audit: { maxChangesPerEvent: 2 } });
    closeGate();
    const requestId = `resumed-spilled-${kind}`;
    const answer = app.request('/resumed/bulk', { method: 'PATCH', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    expect(await journaled(app)).toBeGreaterThan(0);
    await takeForDead(app, instances.rescuer());
    expect(await app.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);

    gate.open!();
    expect((await answer).status).toBe(500);
    await sleep(300);
    const rows = await app.rows();
    const intents = rows.filter((row) => row.action === 'order.bulk-created').map((row) => [row.requestId, row.outcome]);
    // Recorded once (the recovered record), fail-closed 500.
    expect(intents.filter(([, outcome]) => outcome === 'success')).toEqual([]);
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('bulk-3'))).toHaveLength(1);
  });

  it('a unit that spills again after it was recovered stores no part with its own outcome, and every change once', async () => {
    const app = await instances.start({ controllers: [ResumedController], audit: { maxChangesPerEvent: 2 } });
    closeGate();
    const requestId = `resumed-spilled-twice-${kind}`;
    const answer = app.request('/resumed/bulk-twice', { method: 'PATCH', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    expect(await journaled(app)).toBeGreaterThan(0);
    await takeForDead(app, instances.rescuer());
    expect(await app.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);

    gate.open!();
    expect((await answer).status).toBe(500);
    const rows = (await app.rows()).filter((row) => row.requestId === requestId);
    // The request's record is the recovered one: no part says the handler succeeded.
    expect(rows.filter((row) => row.action === 'order.bulk-twice' && row.outcome !== 'unknown').map((row) => row.outcome)).toEqual([]);
    const changes = JSON.stringify(rows.map((row) => row.changes ?? []));
    for (const prefix of ['before', 'after']) {
      for (let i = 0; i < 15; i++) expect(changes.split(`"${prefix}-${i}"`).length - 1, `${prefix}-${i}`).toBe(1);
    }
    expect(await app.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
