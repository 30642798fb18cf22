import { describe, expect, it } from 'vitest';
import { ClsOrderNotes, ClsOrderService, ClsOrdersController, clsTransactionalModule } from '../app/cls-transactional.js';
import { ADAPTERS, createTestApp } from '../app/create-test-app.js';
import { databases } from '../support/test-database.js';
import { transactionLibraryScenarios } from './transaction-library-scenarios.js';

// Transactions opened by @nestjs-cls/transactional (TypeORM adapter), in and out of units of work.

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('@nestjs-cls/transactional on %s over %s', (kind, adapter) => {
  const { t, orders, journalRows, update } = transactionLibraryScenarios({
    kind,
    tag: 'cls',
    names: { required: 'Required', requiresNew: 'RequiresNew', nestedRolledBack: 'a Nested transaction rolled back to its savepoint' },
    startApp: (db) => createTestApp({ db, adapter, imports: [clsTransactionalModule()], controllers: [ClsOrdersController], providers: [ClsOrderService, ClsOrderNotes] }),
    service: ClsOrderService,
  });

  it('20 concurrent audited requests through @Transactional() methods: each intent with its own actor and change', async () => {
    const seeded = await t().seed(() => orders().save(Array.from({ length: 20 }, () => orders().create({ status: 'new' }))));
    const statuses = await Promise.all(
      seeded.map(async (order, i) => {
        const response = await t().request(`/cls/orders/${order.id}`, {
          method: 'PATCH',
          json: { status: `s-${i}` },
          headers: { authorization: `Bearer user-${i}`, 'x-request-id': `cls-conc-${i}` },
        });
        return response.status;
      }),
    );
    expect(statuses.filter((status) => status !== 200)).toEqual([]);

    const rows = await t().rows();
    expect(rows).toHaveLength(20);
    const wrong: string[] = [];
    seeded.forEach((order, i) => {
      const own = rows.filter((row) => row.requestId === `cls-conc-${i}`);
      const expected = [update(order.id, { status: { from: 'new', to: `s-${i}` } })];
      if (own.length !== 1) wrong.push(`cls-conc-${i}: ${own.length} rows`);
      else if (own[0]!.action !== 'order.updated' || own[0]!.kind !== 'intent') wrong.push(`cls-conc-${i}: ${own[0]!.action} ${own[0]!.kind}`);
      else if (JSON.stringify(own[0]!.changes) !== JSON.stringify(expected)) wrong.push(`cls-conc-${i}: ${JSON.stringify(own[0]!.changes)}`);
      else if (own[0]!.actorId !== String(1000 + i)) wrong.push(`cls-conc-${i}: actor ${own[0]!.actorId}`);
    });
    expect(wrong).toEqual([]);
    expect(await journalRows()).toBe(0);
  });
});
