// Two data sources pointed at one database (a PostgreSQL schema, a MariaDB database, a
// SQLite file) share its audit_journal table: a marker of a journal row (in the audit data
// source's journal) must not be taken for the row itself.
import { Controller, Param, ParseIntPipe, Patch } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditLogEntity } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { Order } from '../app/order.entity.js';
import { sharedDatabase, sleep } from '../support/paused-instances.js';
import { databases } from '../support/test-database.js';
import { twoDataSourceInstance } from '../support/two-data-source-instances.js';

@Controller('shop')
class ShopController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @Patch(':id/audited')
  @Audited('order.noted')
  async audited(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update({ id }, { note: 'x' });
    return { id };
  }
}

describe.each(databases())('two data sources on one database (one journal table), on %s', (kind) => {
  it('a PATCH changing the main data source is recorded once', async () => {
    const db = await sharedDatabase(kind);
    const app = await twoDataSourceInstance(db, db, { recoverAfter: 2_000 }, [ShopController]);
    try {
      const order = await app.main.getRepository(Order).save({ status: 'new', total: 1 });
      await sleep(300);
      await app.audit.getRepository(AuditLogEntity).clear();
      const response = await fetch(`${app.url}/shop/${order.id}/audited`, { method: 'PATCH' });
      await sleep(300);
      await app.app.get(JournalRecovery).runPass();
      const rows = await app.audit.getRepository(AuditLogEntity).find();
      expect(response.status).toBe(200);
      expect(rows.map((row) => row.action)).toEqual(['order.noted']);
    } finally {
      await app.app.close();
      await db.drop();
    }
  }, 60_000);
});
