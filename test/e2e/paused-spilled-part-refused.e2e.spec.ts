import { Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { pausedInstances, sleep, takeForDead } from '../support/paused-instances.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const MAX_CHANGES = 10;


@Controller('spilled-refused-orders')
@UseGuards(TokenGuard)
class OrdersController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('orders.bulk-created')
  async create(): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      for (let i = 0; i < MAX_CHANGES * 5; i++) await manager.getRepository(Order).save({ status: 'bulk', total: i });
    });
    return { ok: true };
  }
}

/** Refuses every `audit_log` row that is part 3 of an event (`on`), or no longer (`off`). */
async function refusePart3(dataSource: DataSource, db: TestDatabase, on: boolean): Promise<void> {
  if (db.kind === 'sqlite') {
    await dataSource.query(
      on ? `CREATE TRIGGER refuse_part3 BEFORE INSERT ON audit_log WHEN NEW.context LIKE '%"index":3,%' BEGIN SELECT RAISE(ABORT, 'part 3 refused'); END` : 'DROP TRIGGER refuse_part3',
    );
  } else {
    const schema = (db.options as { schema: string }).schema;
    if (on) {
      await dataSource.query(
        `CREATE FUNCTION "${schema}".refuse_part3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.context::text ~ '"index": ?3[,}]' THEN RAISE EXCEPTION 'part 3 refused'; END IF; RETURN NEW; END $$`,
      );
      await dataSource.query(`CREATE TRIGGER refuse_part3 BEFORE INSERT ON "${schema}".audit_log FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse_part3()`);
    } else {
      await dataSource.query(`DROP TRIGGER refuse_part3 ON "${schema}".audit_log`);
      await dataSource.query(`DROP FUNCTION "${schema}".refuse_part3()`);
    }
  }
}

/**
 * A unit whose changes all went to the journal, whose store fails at part 3 (parts 1 and 2
 * stored), and whose instance is then taken for dead: the rescuer recovers what is left;
 * once the store works again, every order is recorded once and no part twice.
 */
describe.each(databases().filter((kind) => kind !== 'mariadb'))('a spilled unit stored in part, then recovered by another instance, on %s', (kind) => {
  const instances = pausedInstances(kind);

  it('each order recorded once, no part twice', async () => {
    const paused = await instances.start({ controllers: [OrdersController], audit: { maxChangesPerEvent: MAX_CHANGES } });
    const requestId = `spilled-refused-${kind}`;
    await refusePart3(paused.dataSource, instances.db(), true);
    let status: number;
    try {
      status = (await paused.request('/spilled-refused-orders', { method: 'POST', headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId } })).status;
      await takeForDead(paused, instances.rescuer());
    } finally {
      await refusePart3(paused.dataSource, instances.db(), false);
    }
    expect(status).toBe(500);
    const journal = paused.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 60 && (await journal.count()) > 0; i++) {
      await instances.rescuer().app.get(JournalRecovery).runPass();
      await sleep(100);
    }
    await sleep(1_500);
    expect(await journal.count()).toBe(0);
    const rows = (await paused.rows()).filter((row) => row.requestId === requestId);
    const created = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order');
    expect(new Set(created.map((change) => change.id)).size).toBe(MAX_CHANGES * 5);
    expect(created, JSON.stringify(rows.map((row) => [row.id, row.kind, row.outcome, row.context, (row.changes ?? []).length]))).toHaveLength(MAX_CHANGES * 5);
  });
});
