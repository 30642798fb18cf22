import 'reflect-metadata';
import { Controller, Param, ParseIntPipe, Patch } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { describe, expect, it, vi } from 'vitest';
import { Audited, AuditInstanceEntity, AuditJournalEntity, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Order } from '../app/order.entity.js';
import { closeGate, gate, sleep } from '../support/paused-instances.js';
import { databases } from '../support/test-database.js';
import { pausedTwoDataSourceInstances } from '../support/two-data-source-instances.js';

@Controller('gated')
class GatedController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Commits a change in the main data source (its journal row is written there), then waits for the gate. */
  @Patch(':id')
  @Audited('order.gated')
  async gated(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update({ id }, { status: 'gated' });
    await gate.opened;
    return { id };
  }

  /** The same, and a second change after the gate. */
  @Patch(':id/twice')
  @Audited('order.gated-twice')
  async twice(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update({ id }, { status: 'before-pause' });
    await gate.opened;
    await this.orders.update({ id }, { status: 'after-resume' });
    return { id };
  }
}

/**
 * An instance taken for dead while alive, whose unit's journal rows are in another data
 * source than the audit trail: another instance recovers them; when the paused one
 * resumes, it stores no second record of the unit.
 */
describe.each(databases())('an instance taken for dead whose journal rows are in another data source, on %s', (kind) => {
  const env = pausedTwoDataSourceInstances(kind, [GatedController]);

  it.each([
    { failOpen: false, status: 500 },
    { failOpen: true, status: 200 },
  ])('stores one record of the request (the recovered one) and answers $status (failOpen $failOpen)', async ({ failOpen, status }) => {
    const paused = await env.start({ failOpen });
    const order = await paused.main.getRepository(Order).save({ status: 'new', total: 1 });
    const requestId = `paused-elsewhere-${kind}-${failOpen}`;
    const journal = paused.main.getRepository(AuditJournalEntity);
    // The order's own fallback event: stored, and its journal rows gone, before the test goes on.
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(20);

    closeGate();
    const answer = fetch(`${paused.url}/gated/${order.id}`, { method: 'PATCH', headers: { 'x-request-id': requestId } });
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);

    // Taken for dead: its lease aged, and the other instance recovers its journal rows.
    const id = paused.app.get(JournalRecovery).instanceId;
    await paused.audit.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
    await env.rescuer.app.get(JournalRecovery).runPass();
    expect(await journal.count()).toBe(0);
    const recordOf = async () =>
      (await paused!.audit.getRepository(AuditLogEntity).findBy({ requestId })).map((row) => [row.action, row.kind, row.outcome]);
    expect(await recordOf()).toEqual([['order.gated', 'intent', 'unknown']]);

    gate.open!();
    expect((await answer).status).toBe(status);
    await paused.app.get(JournalRecovery).runPass();
    await sleep(200);
    expect(await recordOf()).toEqual([['order.gated', 'intent', 'unknown']]);
  });

  it('records a change committed after the recovery once, also while the recovering instance has not yet deleted its marker', async () => {
    const paused = await env.start({ failOpen: true });
    const order = await paused.main.getRepository(Order).save({ status: 'new', total: 1 });
    const journal = paused.main.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(20);

    closeGate();
    const answer = fetch(`${paused.url}/gated/${order.id}/twice`, { method: 'PATCH', headers: { 'x-request-id': `marker-window-${kind}` } });
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);

    // The recovering instance's marker, deleted after its commits, is deleted only once the
    // resumed unit has answered (its DELETE held back: a slow connection).
    const recovery = env.rescuer.app.get(JournalRecovery) as unknown as { deleteMarkers: (...args: unknown[]) => Promise<void> };
    const deleteMarkers = recovery.deleteMarkers.bind(recovery);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const atDelete = new Promise<void>((resolve) => (reached = resolve));
    const held = vi.spyOn(recovery, 'deleteMarkers').mockImplementationOnce(async (...args: unknown[]) => {
      reached();
      await released;
      return deleteMarkers(...args);
    });
    const id = paused.app.get(JournalRecovery).instanceId;
    await paused.audit.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
    const pass = env.rescuer.app.get(JournalRecovery).runPass();
    try {
      await atDelete;
      expect(await journal.count()).toBe(0);
      gate.open!();
      expect((await answer).status).toBe(200);
    } finally {
      release();
      await pass;
      held.mockRestore();
    }
    expect((await paused.main.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('after-resume');
    // The row the unit left in the main data source's journal: recovery records it.
    await env.rescuer.app.get(JournalRecovery).runPass();
    const rows = await paused.audit.getRepository(AuditLogEntity).findBy({ requestId: `marker-window-${kind}` });
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('"to":"after-resume"'))).toHaveLength(1);
    expect(await journal.count()).toBe(0);
  });

  it('records a change committed after the recovery once when the recovering instance could not delete its marker', async () => {
    const paused = await env.start({ failOpen: true });
    const order = await paused.main.getRepository(Order).save({ status: 'new', total: 1 });
    const journal = paused.main.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(20);

    closeGate();
    const answer = fetch(`${paused.url}/gated/${order.id}/twice`, { method: 'PATCH', headers: { 'x-request-id': `marker-left-${kind}` } });
    for (let i = 0; i < 100 && (await journal.count()) === 0; i++) await sleep(50);
    expect(await journal.count()).toBe(1);

    // The recovering instance's DELETE of its marker, after its commits, fails (a connection reset): the marker stays.
    const recovery = env.rescuer.app.get(JournalRecovery) as unknown as { deleteMarkers: (...args: unknown[]) => Promise<void> };
    const failed = vi.spyOn(recovery, 'deleteMarkers').mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    const id = paused.app.get(JournalRecovery).instanceId;
    await paused.audit.getRepository(AuditInstanceEntity).update({ id }, { heartbeatAt: new Date(Date.now() - 600_000) });
    try {
      await env.rescuer.app.get(JournalRecovery).runPass();
    } finally {
      failed.mockRestore();
    }
    expect(await journal.count()).toBe(0);
    expect(await paused.audit.getRepository(AuditJournalEntity).count()).toBe(1);

    gate.open!();
    expect((await answer).status).toBe(200);
    expect((await paused.main.getRepository(Order).findOneByOrFail({ id: order.id })).status).toBe('after-resume');
    await env.rescuer.app.get(JournalRecovery).runPass();
    const rows = await paused.audit.getRepository(AuditLogEntity).findBy({ requestId: `marker-left-${kind}` });
    // Each change once: the first with the recovered record, the second on its own.
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('"to":"before-pause"'))).toHaveLength(1);
    expect(rows.filter((row) => JSON.stringify(row.changes ?? []).includes('"to":"after-resume"'))).toHaveLength(1);
    expect(await journal.count()).toBe(0);
  });
});
