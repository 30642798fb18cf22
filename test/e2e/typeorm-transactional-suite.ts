import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import {
  forgetTransactionalDataSource,
  OrderRefused,
  transactionalDataSource,
  TxOrderNotes,
  TxOrderService,
  TxOrdersController,
} from '../app/typeorm-transactional.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ALICE = { authorization: 'Bearer alice-token' };

/** Each row as [action, kind, outcome]. */
const summary = (rows: AuditLogEntity[]) => rows.map((row) => [row.action, row.kind, row.outcome]);

/**
 * Transactions opened by typeorm-transactional, in and out of units of work, on each
 * database. The caller has called `initializeTransactionalContext()` (with the storage
 * driver it tests) before: the library patches TypeORM's `Repository` for the process.
 */
export function typeormTransactionalSuite(driver: string): void {
  describe.each(databases())(`typeorm-transactional (${driver}) on %s`, (kind) => {
    let db: TestDatabase;
    let t: TestApp;

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      t = await createTestApp({
        db,
        adapter: 'express',
        dataSourceFactory: transactionalDataSource,
        controllers: [TxOrdersController],
        providers: [TxOrderService, TxOrderNotes],
      });
    });
    afterAll(async () => {
      await t?.close();
      forgetTransactionalDataSource();
      await db?.drop();
    });
    beforeEach(() => t.clearAudit());

    const orders = () => t.dataSource.getRepository(Order);
    const seed = (values: Partial<Order> = {}) => t.seed(() => orders().save(orders().create({ status: 'new', ...values })));
    const journalRows = () => t.dataSource.getRepository(AuditJournalEntity).count();
    const service = () => t.app.get(TxOrderService);
    /** The rows once there are at least `count` of them and no more came for 200 ms. */
    const settledRows = async (count: number): Promise<AuditLogEntity[]> => {
      await expect.poll(async () => (await t.rows()).length, { timeout: 5_000 }).toBeGreaterThanOrEqual(count);
      await new Promise((resolve) => setTimeout(resolve, 200));
      return t.rows();
    };
    const update = (id: number, fields: Record<string, { from: unknown; to: unknown }>) => ({ entity: 'Order', id: String(id), operation: 'update', fields });

    describe('called from an @Audited handler', () => {
      it('a committed @Transactional() method: one success intent claiming its change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}`, { method: 'PATCH', json: { status: 'shipped' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('shipped');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(order.id), requestId: response.headers.get('x-request-id') });
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'shipped' } })]);
        expect(await journalRows()).toBe(0);
      });

      it('a method that joins another one’s transaction (REQUIRED) and updates by criteria: one net change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}`, { method: 'PATCH', json: { status: 'paid', total: 42 }, headers: ALICE });
        expect(response.status).toBe(200);

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'paid' }, total: { from: 0, to: 42 } })]);
      });

      it('a method whose transaction rolls back, its error let through: a failure intent with no change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/refused`, { method: 'PATCH', json: { status: 'rolled-back' }, headers: ALICE });
        expect(response.status).toBe(409);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
        expect(rows[0]!.error).toMatchObject({ status: 409 });
        expect(rows[0]!.changes).toEqual([]);
        expect(JSON.stringify(rows.map((row) => row.changes))).not.toContain('rolled-back');
        expect(await journalRows()).toBe(0);
      });

      it('a method whose transaction rolls back, its error caught by the handler: a success intent with no change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/refused-caught`, { method: 'PATCH', json: { status: 'rolled-back' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]!.changes).toEqual([]);
      });

      it('a committed method, then the handler throws: a failure intent with the committed change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/then-fail`, { method: 'PATCH', json: { status: 'committed' }, headers: ALICE });
        expect(response.status).toBe(409);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('committed');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'committed' } })]);
      });

      it('REQUIRED, REQUIRES_NEW and a NESTED transaction that rolls back: the committed changes, not the rolled-back one', async () => {
        const order = await seed();
        const other = await seed();
        const response = await t.request(`/tt/orders/${order.id}/propagations/${other.id}`, { method: 'PATCH', json: { label: 'ok' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'outer-ok', note: null });
        expect(await orders().findOneByOrFail({ id: other.id })).toMatchObject({ note: 'new-ok' });

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        const changes = [...rows[0]!.changes!].sort((a, b) => Number(a.id) - Number(b.id));
        expect(changes).toEqual([update(order.id, { status: { from: 'new', to: 'outer-ok' } }), update(other.id, { note: { from: null, to: 'new-ok' } })]);
        expect(JSON.stringify(rows)).not.toContain('nested-ok');
        expect(await journalRows()).toBe(0);
      });

      it('the outer transaction rolls back after a REQUIRES_NEW one committed: a failure intent with only the committed change', async () => {
        const order = await seed();
        const other = await seed();
        const response = await t.request(`/tt/orders/${order.id}/propagations/${other.id}`, { method: 'PATCH', json: { label: 'rb', refuse: true }, headers: ALICE });
        expect(response.status).toBe(409);
        expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });
        // SQLite: TypeORM runs every query runner on one connection, where the "new" transaction is a savepoint of the outer one.
        const independent = kind !== 'sqlite';
        expect(await orders().findOneByOrFail({ id: other.id })).toMatchObject({ note: independent ? 'new-rb' : null });

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
        expect(rows[0]!.changes).toEqual(independent ? [update(other.id, { note: { from: null, to: 'new-rb' } })] : []);
        expect(JSON.stringify(rows.map((row) => row.changes))).not.toMatch(/outer-rb|nested-rb/);
        expect(await journalRows()).toBe(0);
      });

      it('@Transactional() on the @Audited handler itself: one success intent claiming the insert', async () => {
        const response = await t.request('/tt/orders', { method: 'POST', json: { note: 'tt-created' }, headers: ALICE });
        expect(response.status).toBe(201);
        const created = (await response.json()) as Order;

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.created', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(created.id) });
        expect(rows[0]!.changes).toHaveLength(1);
        expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(created.id), operation: 'insert', fields: { note: { to: 'tt-created' } } });
      });

      it('an @Audited provider method inside the transaction: its intent claims its change, the handler’s the rest', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/noted`, { method: 'PATCH', json: { status: 'noted', note: 'tt-note' }, headers: ALICE });
        expect(response.status).toBe(200);

        const rows = await t.rows();
        expect(summary(rows).sort()).toEqual([
          ['order.noted', 'intent', 'success'],
          ['order.updated', 'intent', 'success'],
        ]);
        const noted = rows.find((row) => row.action === 'order.noted')!;
        const updated = rows.find((row) => row.action === 'order.updated')!;
        expect(noted).toMatchObject({ actorId: '1', requestId: response.headers.get('x-request-id') });
        expect(noted.changes).toEqual([update(order.id, { note: { from: null, to: 'tt-note' } })]);
        expect(updated.changes).toEqual([update(order.id, { status: { from: 'new', to: 'noted' } })]);
      });

      it('an @Audited provider method inside a transaction that rolls back after it: no row records the change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/noted`, { method: 'PATCH', json: { status: 'noted-rb', note: 'tt-note-rb', refuse: true }, headers: ALICE });
        expect(response.status).toBe(409);
        expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });

        const rows = await t.rows();
        expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
        expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
        expect(rows.find((row) => row.action === 'order.updated')).toMatchObject({ outcome: 'failure' });
        expect(JSON.stringify(rows)).not.toMatch(/noted-rb|tt-note-rb/);
      });

      it('a write made by a runOnTransactionCommit() callback the handler waits for: claimed with the transaction’s change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/on-commit`, { method: 'PATCH', json: { status: 'hooked', note: 'after-commit' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'hooked', note: 'after-commit' });

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'hooked' }, note: { from: null, to: 'after-commit' } })]);
        expect(await journalRows()).toBe(0);
      });

      it('raw SQL through dataSource.query() inside the transaction, committed: claimed once, as a partial change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/raw`, { method: 'PATCH', json: { note: 'raw-note' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect((await orders().findOneByOrFail({ id: order.id })).note).toBe('raw-note');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }]);
        expect(await journalRows()).toBe(0);
      });

      it('raw SQL through dataSource.query() inside a transaction that rolls back: a failure intent with no change', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/raw`, { method: 'PATCH', json: { note: 'raw-rb', refuse: true }, headers: ALICE });
        expect(response.status).toBe(409);
        expect((await orders().findOneByOrFail({ id: order.id })).note).toBeNull();

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
        expect(rows[0]!.changes).toEqual([]);
      });

      it('raw SQL through dataSource.query() outside any transaction: claimed once, as a partial change', async () => {
        // The library replaced dataSource.query() before the module started: the module
        // does not open a transaction around the write, whose journal row follows it
        // (docs/capture-rules.md#limits); it is recorded all the same.
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/raw-outside`, { method: 'PATCH', json: { note: 'raw-outside' }, headers: ALICE });
        expect(response.status).toBe(200);
        expect((await orders().findOneByOrFail({ id: order.id })).note).toBe('raw-outside');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
        expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }]);
        expect(await journalRows()).toBe(0);
      });
    });

    describe('outside an @Audited handler', () => {
      it('from a route that is not audited: one fallback change event with the request’s actor', async () => {
        const order = await seed();
        const response = await t.request(`/tt/orders/${order.id}/plain`, { method: 'PATCH', json: { status: 'plain' }, headers: ALICE });
        expect(response.status).toBe(200);

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'change', 'success']]);
        expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(order.id), requestId: response.headers.get('x-request-id') });
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'plain' } })]);
      });

      it('from a script, committed: one fallback change event of the system', async () => {
        const order = await seed();
        await service().setStatus(order.id, 'scripted');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.updated', 'change', 'success']]);
        expect(rows[0]).toMatchObject({ actorType: 'system', targetId: String(order.id) });
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'scripted' } })]);
        expect(await journalRows()).toBe(0);
      });

      it('from a script, rolled back: no row', async () => {
        const order = await seed();
        await expect(service().setStatusThenRefuse(order.id, 'script-rb')).rejects.toThrow(OrderRefused);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');
        expect(await t.rows()).toEqual([]);
      });

      it('a write made by a runOnTransactionCommit() callback in a script: its own fallback event, after the transaction’s', async () => {
        const order = await seed();
        await service().setStatusThenNoteOnCommit(order.id, 'hooked', 'script-after-commit');

        const rows = await t.rows();
        expect(summary(rows)).toEqual([
          ['order.updated', 'change', 'success'],
          ['order.updated', 'change', 'success'],
        ]);
        expect(rows.map((row) => row.changes)).toEqual([
          [update(order.id, { status: { from: 'new', to: 'hooked' } })],
          [update(order.id, { note: { from: null, to: 'script-after-commit' } })],
        ]);
      });

      it('AuditService.log() inside a @Transactional() method, committed: one intent claiming the insert, no fallback row', async () => {
        const order = await service().importWithLog('tt-log', false);

        const rows = await t.rows();
        expect(summary(rows)).toEqual([['order.imported', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorType: 'system', targetId: String(order.id) });
        expect(rows[0]!.changes).toHaveLength(1);
        expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert', fields: { note: { to: 'tt-log' } } });
      });

      it('AuditService.log() inside a @Transactional() method that rolls back: no row at all', async () => {
        await expect(service().importWithLog('tt-log-rb', true)).rejects.toThrow(OrderRefused);
        expect(await orders().findOneBy({ note: 'tt-log-rb' })).toBeNull();
        expect(await t.rows()).toEqual([]);
      });

      it('an @Audited job whose unit runs inside its @Transactional(), committed: one intent claiming the change', async () => {
        const order = await seed();
        await t.app.get(TxOrderNotes).review(order.id, false);

        // The unit ended inside the transaction: its event is stored once that has committed, after the call returned.
        const rows = await settledRows(1);
        expect(summary(rows)).toEqual([['order.reviewed', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorType: 'system', source: 'job' });
        expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'reviewed' } })]);
        expect(await journalRows()).toBe(0);
      });

      it('an @Audited job whose unit runs inside its @Transactional(), rolled back: a failure intent with no change', async () => {
        const order = await seed();
        await expect(t.app.get(TxOrderNotes).review(order.id, true)).rejects.toThrow(OrderRefused);
        expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

        const rows = await settledRows(1);
        expect(summary(rows)).toEqual([['order.reviewed', 'intent', 'failure']]);
        expect(rows[0]!.changes).toEqual([]);
      });

      it('an @Audited provider method inside a @Transactional() method of a script: its intent, and a fallback event for the rest', async () => {
        const order = await seed();
        await service().setStatusAndNote(order.id, 'script-noted', 'script-note', false);

        const rows = await settledRows(2);
        expect(summary(rows).sort()).toEqual([
          ['order.noted', 'intent', 'success'],
          ['order.updated', 'change', 'success'],
        ]);
        expect(rows.find((row) => row.action === 'order.noted')!.changes).toEqual([update(order.id, { note: { from: null, to: 'script-note' } })]);
        expect(rows.find((row) => row.action === 'order.updated')!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'script-noted' } })]);
        expect(await journalRows()).toBe(0);
      });

      it('an @Audited provider method inside a @Transactional() method of a script that rolls back after it: no row records a change', async () => {
        const order = await seed();
        await expect(service().setStatusAndNote(order.id, 'script-noted-rb', 'script-note-rb', true)).rejects.toThrow(OrderRefused);
        expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });

        const rows = await settledRows(0);
        expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
        expect(JSON.stringify(rows)).not.toMatch(/script-noted-rb|script-note-rb/);
        expect(await journalRows()).toBe(0);
      });

      // SQLite: TypeORM runs every query runner on one connection, the module's own writes
      // included, so that these events are written inside the app's transaction and rolled
      // back with it, with or without the library (docs/capture-rules.md#limits).
      it.skipIf(kind === 'sqlite')('an @Audited job that changed nothing, in a @Transactional() method that rolls back after it: its intent is stored', async () => {
        const order = await seed();
        await expect(service().checkThenRefuse(order.id)).rejects.toThrow(OrderRefused);

        const rows = await settledRows(1);
        expect(summary(rows)).toEqual([['order.checked', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorType: 'system', source: 'job', targetId: String(order.id), changes: [] });
      });

      it.skipIf(kind === 'sqlite')('runAs() that only logs, in a @Transactional() method that rolls back after it: its event is stored', async () => {
        const order = await seed();
        await expect(service().runAsThenRefuse(order.id)).rejects.toThrow(OrderRefused);

        const rows = await settledRows(1);
        expect(summary(rows)).toEqual([['order.looked-at', 'intent', 'success']]);
        expect(rows[0]).toMatchObject({ actorType: 'service', actorId: 'importer', source: 'job', targetId: String(order.id) });
      });
    });

    it('20 concurrent audited requests through @Transactional() methods: each intent with its own actor and change', async () => {
      const seeded = await t.seed(() => orders().save(Array.from({ length: 20 }, () => orders().create({ status: 'new' }))));
      const statuses = await Promise.all(
        seeded.map(async (order, i) => {
          const response = await t.request(`/tt/orders/${order.id}/noted`, {
            method: 'PATCH',
            json: { status: `s-${i}`, note: `n-${i}` },
            headers: { authorization: `Bearer user-${i}`, 'x-request-id': `tt-conc-${i}` },
          });
          return response.status;
        }),
      );
      expect(statuses.filter((status) => status !== 200)).toEqual([]);

      const rows = await t.rows();
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
