import { Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { closeGate, gate, journaled, pausedInstances, sleep, takeForDead } from '../support/paused-instances.js';
import { databases } from '../support/test-database.js';

/** Changes per event of the paused instance: it keeps at most five times as many in memory. */
const MAX_CHANGES = 2;
const ORDERS = MAX_CHANGES * 5;

@Controller('paused-spilled')
@UseGuards(TokenGuard)
class PausedSpilledController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Creates as many orders as the unit keeps in memory, in one transaction: every change goes to the journal only. Then waits for the gate. */
  @Post('orders')
  @Audited('orders.bulk-created')
  async create(): Promise<{ created: number }> {
    await this.dataSource.transaction(async (manager) => {
      for (let i = 0; i < ORDERS; i++) await manager.getRepository(Order).save({ status: 'bulk', total: i });
    });
    await gate.opened;
    return { created: ORDERS };
  }
}

/**
 * An instance taken for dead while alive, whose unit kept all its changes in the journal
 * only (too many for memory): another instance recovers the unit; when the paused one
 * resumes, it stores no second record of it.
 */
describe.each(databases())('an instance taken for dead whose unit spilled all its changes, on %s', (kind) => {
  const instances = pausedInstances(kind);

  it.each([
    { failOpen: false, status: 500 },
    { failOpen: true, status: 201 },
  ])('stores one record of the request (the recovered one) and answers $status (failOpen $failOpen)', async ({ failOpen, status }) => {
    const paused = await instances.start({ controllers: [PausedSpilledController], audit: { maxChangesPerEvent: MAX_CHANGES, failOpen } });
    const requestId = `paused-spilled-${kind}-${failOpen}`;
    closeGate();
    const answer = paused.request('/paused-spilled/orders', { method: 'POST', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    expect(await journaled(paused)).toBeGreaterThan(0);
    const journal = paused.dataSource.getRepository(AuditJournalEntity);
    expect((await journal.find()).every((row) => row.entry.spilled), 'every journal row of the unit holds spilled changes').toBe(true);

    await takeForDead(paused, instances.rescuer());
    expect(await journal.count()).toBe(0);
    const recovered = (await paused.rows()).filter((row) => row.requestId === requestId);
    expect(recovered.filter((row) => row.kind === 'intent').map((row) => row.outcome)).toEqual(['unknown']);

    gate.open!();
    expect((await answer).status).toBe(status);
    await paused.app.get(JournalRecovery).runPass();
    await sleep(200);
    const rows = (await paused.rows()).filter((row) => row.requestId === requestId);
    expect(rows.filter((row) => row.kind === 'intent').map((row) => [row.action, row.outcome])).toEqual([['orders.bulk-created', 'unknown']]);
    const created = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order');
    expect(created).toHaveLength(ORDERS);
  });
});
