import { describe, expect, it } from 'vitest';
import { createTestApp } from '../app/create-test-app.js';
import {
  forgetTransactionalDataSource,
  OrderRefused,
  transactionalDataSource,
  TxOrderNotes,
  TxOrderService,
  TxOrdersController,
} from '../app/typeorm-transactional.js';
import { databases } from '../support/test-database.js';
import { ALICE, summary, transactionLibraryScenarios } from './transaction-library-scenarios.js';

/**
 * Transactions opened by typeorm-transactional, in and out of units of work, on each
 * database. The caller has called `initializeTransactionalContext()` (with the storage
 * driver it tests) before: the library patches TypeORM's `Repository` for the process.
 */
export function typeormTransactionalSuite(driver: string): void {
  describe.each(databases())(`typeorm-transactional (${driver}) on %s`, (kind) => {
    const { t, orders, journalRows, update } = transactionLibraryScenarios({
      kind,
      tag: 'tt',
      names: { required: 'REQUIRED', requiresNew: 'REQUIRES_NEW', nestedRolledBack: 'a NESTED transaction that rolls back' },
      startApp: (db) =>
        createTestApp({
          db,
          adapter: 'express',
          dataSourceFactory: transactionalDataSource,
          controllers: [TxOrdersController],
          providers: [TxOrderService, TxOrderNotes],
        }),
      afterClose: forgetTransactionalDataSource,
      service: TxOrderService,
      calledFromHandler: ({ t, seed, orders, journalRows, update }) => {
        it('a write made by a runOnTransactionCommit() callback the handler waits for: claimed with the transaction’s change', async () => {
          const order = await seed();
          const response = await t().request(`/tt/orders/${order.id}/on-commit`, { method: 'PATCH', json: { status: 'hooked', note: 'after-commit' }, headers: ALICE });
          expect(response.status).toBe(200);
          expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'hooked', note: 'after-commit' });

          const rows = await t().rows();
          expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
          expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'hooked' }, note: { from: null, to: 'after-commit' } })]);
          expect(await journalRows()).toBe(0);
        });

        it('raw SQL through dataSource.query() inside the transaction, committed: claimed once, as a partial change', async () => {
          const order = await seed();
          const response = await t().request(`/tt/orders/${order.id}/raw`, { method: 'PATCH', json: { note: 'raw-note' }, headers: ALICE });
          expect(response.status).toBe(200);
          expect((await orders().findOneByOrFail({ id: order.id })).note).toBe('raw-note');

          const rows = await t().rows();
          expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
          expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }]);
          expect(await journalRows()).toBe(0);
        });

        it('raw SQL through dataSource.query() inside a transaction that rolls back: a failure intent with no change', async () => {
          const order = await seed();
          const response = await t().request(`/tt/orders/${order.id}/raw`, { method: 'PATCH', json: { note: 'raw-rb', refuse: true }, headers: ALICE });
          expect(response.status).toBe(409);
          expect((await orders().findOneByOrFail({ id: order.id })).note).toBeNull();

          const rows = await t().rows();
          expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
          expect(rows[0]!.changes).toEqual([]);
        });

        it('raw SQL through dataSource.query() outside any transaction: claimed once, as a partial change', async () => {
          // The library replaced dataSource.query() before the module started: the module
          // does not open a transaction around the write, whose journal row follows it
          // (docs/capture-rules.md#limits); it is recorded all the same.
          const order = await seed();
          const response = await t().request(`/tt/orders/${order.id}/raw-outside`, { method: 'PATCH', json: { note: 'raw-outside' }, headers: ALICE });
          expect(response.status).toBe(200);
          expect((await orders().findOneByOrFail({ id: order.id })).note).toBe('raw-outside');

          const rows = await t().rows();
          expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
          expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }]);
          expect(await journalRows()).toBe(0);
        });
      },
      providerInTransaction: ({ seed, orders, journalRows, settledRows, service }) => {
        it('from a script, the transaction rolled back after it: no row records a change', async () => {
          const order = await seed();
          await expect(service().setStatusAndNote(order.id, 'script-noted-rb', 'script-note-rb', true)).rejects.toThrow(OrderRefused);
          expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });

          const rows = await settledRows(0);
          expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
          expect(JSON.stringify(rows)).not.toMatch(/script-noted-rb|script-note-rb/);
          expect(await journalRows()).toBe(0);
        });
      },
      outsideHandler: ({ t, seed, orders, journalRows, settledRows, update, service }) => {
        it('a write made by a runOnTransactionCommit() callback in a script: its own fallback event, after the transaction’s', async () => {
          const order = await seed();
          await service().setStatusThenNoteOnCommit(order.id, 'hooked', 'script-after-commit');

          const rows = await t().rows();
          expect(summary(rows)).toEqual([
            ['order.updated', 'change', 'success'],
            ['order.updated', 'change', 'success'],
          ]);
          expect(rows.map((row) => row.changes)).toEqual([
            [update(order.id, { status: { from: 'new', to: 'hooked' } })],
            [update(order.id, { note: { from: null, to: 'script-after-commit' } })],
          ]);
        });

        it('an @Audited job whose unit runs inside its @Transactional(), committed: one intent claiming the change', async () => {
          const order = await seed();
          await t().app.get(TxOrderNotes).review(order.id, false);

          // The unit ended inside the transaction: its event is stored once that has committed, after the call returned.
          const rows = await settledRows(1);
          expect(summary(rows)).toEqual([['order.reviewed', 'intent', 'success']]);
          expect(rows[0]).toMatchObject({ actorType: 'system', source: 'job' });
          expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'reviewed' } })]);
          expect(await journalRows()).toBe(0);
        });

        it('an @Audited job whose unit runs inside its @Transactional(), rolled back: a failure intent with no change', async () => {
          const order = await seed();
          await expect(t().app.get(TxOrderNotes).review(order.id, true)).rejects.toThrow(OrderRefused);
          expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

          const rows = await settledRows(1);
          expect(summary(rows)).toEqual([['order.reviewed', 'intent', 'failure']]);
          expect(rows[0]!.changes).toEqual([]);
        });
      },
    });

    it('20 concurrent audited requests through @Transactional() methods: each intent with its own actor and change', async () => {
      const seeded = await t().seed(() => orders().save(Array.from({ length: 20 }, () => orders().create({ status: 'new' }))));
      const statuses = await Promise.all(
        seeded.map(async (order, i) => {
          const response = await t().request(`/tt/orders/${order.id}/noted`, {
            method: 'PATCH',
            json: { status: `s-${i}`, note: `n-${i}` },
            headers: { authorization: `Bearer user-${i}`, 'x-request-id': `tt-conc-${i}` },
          });
          return response.status;
        }),
      );
      expect(statuses.filter((status) => status !== 200)).toEqual([]);

      const rows = await t().rows();
      expect(rows).toHaveLength(40);
      const wrong: string[] = [];
      seeded.forEach((order, i) => {
        const own = rows.filter((row) => row.requestId === `tt-conc-${i}`);
        const updated = own.find((row) => row.action === 'order.updated' && row.kind === 'intent');
        const noted = own.find((row) => row.action === 'order.noted' && row.kind === 'intent');
        if (own.length !== 2 || !updated || !noted) wrong.push(`tt-conc-${i}: ${JSON.stringify(summary(own))}`);
        else if (JSON.stringify(updated.changes) !== JSON.stringify([update(order.id, { status: { from: 'new', to: `s-${i}` } })])) wrong.push(`tt-conc-${i}: ${JSON.stringify(updated.changes)}`);
        else if (JSON.stringify(noted.changes) !== JSON.stringify([update(order.id, { note: { from: null, to: `n-${i}` } })])) wrong.push(`tt-conc-${i}: ${JSON.stringify(noted.changes)}`);
        else if (updated.actorId !== String(1000 + i) || noted.actorId !== String(1000 + i)) wrong.push(`tt-conc-${i}: actors ${updated.actorId} ${noted.actorId}`);
      });
      expect(wrong).toEqual([]);
      expect(await journalRows()).toBe(0);
    });
  });
}
