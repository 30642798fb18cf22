import { Controller, Param, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity } from '../../lib/index.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { closeGate, gate, journaled, pausedInstances, takeForDead } from '../support/paused-instances.js';
import { databases } from '../support/test-database.js';

const MAX_CHANGES = 10;

@Controller('spilled-recovered')
@UseGuards(TokenGuard)
class SpilledRecoveredController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** `count` orders in one transaction (past five times MAX_CHANGES they go to the journal only), then waits for the gate. */
  @Post(':count')
  @Audited('orders.bulk-created')
  async create(@Param('count') count: string): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      for (let i = 0; i < Number(count); i++) await manager.getRepository(Order).save({ status: 'bulk', total: i });
    });
    await gate.opened;
    return { ok: true };
  }
}

/**
 * An instance taken for dead while its unit, whose changes went to the journal, waits: the
 * unit another instance recovers is bounded as any stored unit is — no event carries more
 * than the recovering instance's maxChangesPerEvent changes (docs/guarantees.md G5, docs/audit-record.md "Large units").
 */
describe.each(databases())('a recovered unit whose changes went to the journal, on %s', (kind) => {
  // The rescuer stores what it recovers within its own bounds: the same as the paused instance's here.
  const instances = pausedInstances(kind, { maxChangesPerEvent: MAX_CHANGES });

  it.each([50, 60])('%i orders at maxChangesPerEvent 10: each recovered event carries at most 10 changes, each order once', async (count) => {
    const paused = await instances.start({ controllers: [SpilledRecoveredController], audit: { maxChangesPerEvent: MAX_CHANGES } });
    const requestId = `spilled-recovered-${kind}-${count}`;
    closeGate();
    const answer = paused.request(`/spilled-recovered/${count}`, { method: 'POST', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } });
    expect(await journaled(paused)).toBeGreaterThan(0);
    await takeForDead(paused, instances.rescuer());
    expect(await paused.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
    gate.open!();
    await answer;
    const rows = (await paused.rows()).filter((row) => row.requestId === requestId);
    const created = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order');
    expect(new Set(created.map((change) => change.id)).size).toBe(count);
    expect(rows.map((row) => (row.changes ?? []).length)).toEqual(Array.from({ length: count / MAX_CHANGES }, () => MAX_CHANGES));
  });
});
