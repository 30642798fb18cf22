import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Repository } from 'typeorm';
import { AuditJournalEntity, type AuditLogEntity } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { OrderRefused, type TransactionalOrderService } from '../app/transaction-library-orders.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

export const ALICE = { authorization: 'Bearer alice-token' };

/** Each row as [action, kind, outcome]. */
export const summary = (rows: AuditLogEntity[]) => rows.map((row) => [row.action, row.kind, row.outcome]);

/** What the cases of one library's suite reach: its app, once started, and helpers on it. */
export interface TransactionLibraryContext<S extends TransactionalOrderService> {
  /** The app (once started). */
  t(): TestApp;
  orders(): Repository<Order>;
  seed(values?: Partial<Order>): Promise<Order>;
  journalRows(): Promise<number>;
  /** The rows once there are at least `count` of them and no more came for 200 ms. */
  settledRows(count: number): Promise<AuditLogEntity[]>;
  /** The change an update of order `id` records. */
  update(id: number, fields: Record<string, { from: unknown; to: unknown }>): { entity: string; id: string; operation: string; fields: typeof fields };
  /** The app's instance of the library's service. */
  service(): S;
}

export interface TransactionLibrary<S extends TransactionalOrderService> {
  kind: DatabaseKind;
  /** The app's routes are under `/<tag>/orders`; the notes the cases write start with `<tag>-`. */
  tag: string;
  /** The library's names of its propagations, as the cases name them. */
  names: { required: string; requiresNew: string; nestedRolledBack: string };
  startApp(db: TestDatabase): Promise<TestApp>;
  /** After the app is closed, before its database is dropped. */
  afterClose?(): void;
  service: abstract new (...args: never[]) => S;
  /** The library's own cases, in each group. */
  calledFromHandler?(s: TransactionLibraryContext<S>): void;
  providerInTransaction?(s: TransactionLibraryContext<S>): void;
  outsideHandler?(s: TransactionLibraryContext<S>): void;
}

/**
 * The cases of transactions a library opens (its `@Transactional()` methods, see
 * test/app/transaction-library-orders.ts), in and out of units of work, that every such
 * library passes alike; run inside a `describe` per database. Returns what the library's
 * own cases after them reach.
 */
export function transactionLibraryScenarios<S extends TransactionalOrderService>(library: TransactionLibrary<S>): TransactionLibraryContext<S> {
  const { kind, tag, names } = library;
  let db: TestDatabase;
  let app: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    app = await library.startApp(db);
  });
  afterAll(async () => {
    await app?.close();
    library.afterClose?.();
    await db?.drop();
  });
  beforeEach(() => app.clearAudit());

  const s: TransactionLibraryContext<S> = {
    t: () => app,
    orders: () => app.dataSource.getRepository(Order),
    seed: (values: Partial<Order> = {}) => app.seed(() => s.orders().save(s.orders().create({ status: 'new', ...values }))),
    journalRows: () => app.dataSource.getRepository(AuditJournalEntity).count(),
    settledRows: async (count: number): Promise<AuditLogEntity[]> => {
      await expect.poll(async () => (await app.rows()).length, { timeout: 5_000 }).toBeGreaterThanOrEqual(count);
      await new Promise((resolve) => setTimeout(resolve, 200));
      return app.rows();
    },
    update: (id: number, fields: Record<string, { from: unknown; to: unknown }>) => ({ entity: 'Order', id: String(id), operation: 'update', fields }),
    service: () => app.app.get(library.service),
  };
  const { t, orders, seed, journalRows, settledRows, update, service } = s;
  const path = (rest = '') => `/${tag}/orders${rest}`;

  describe('called from an @Audited handler', () => {
    it('a committed @Transactional() method: one success intent claiming its change', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}`), { method: 'PATCH', json: { status: 'shipped' }, headers: ALICE });
      expect(response.status).toBe(200);
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('shipped');

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(order.id), requestId: response.headers.get('x-request-id') });
      expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'shipped' } })]);
      expect(await journalRows()).toBe(0);
    });

    it(`a method that joins another one’s transaction (${names.required}) and updates by criteria: one net change`, async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}`), { method: 'PATCH', json: { status: 'paid', total: 42 }, headers: ALICE });
      expect(response.status).toBe(200);

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
      expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'paid' }, total: { from: 0, to: 42 } })]);
    });

    it('a method whose transaction rolls back, its error let through: a failure intent with no change', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/refused`), { method: 'PATCH', json: { status: 'rolled-back' }, headers: ALICE });
      expect(response.status).toBe(409);
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
      expect(rows[0]!.error).toMatchObject({ status: 409 });
      expect(rows[0]!.changes).toEqual([]);
      expect(JSON.stringify(rows.map((row) => row.changes))).not.toContain('rolled-back');
      expect(await journalRows()).toBe(0);
    });

    it('a method whose transaction rolls back, its error caught by the handler: a success intent with no change', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/refused-caught`), { method: 'PATCH', json: { status: 'rolled-back' }, headers: ALICE });
      expect(response.status).toBe(200);
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
      expect(rows[0]!.changes).toEqual([]);
    });

    it('a committed method, then the handler throws: a failure intent with the committed change', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/then-fail`), { method: 'PATCH', json: { status: 'committed' }, headers: ALICE });
      expect(response.status).toBe(409);
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('committed');

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
      expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'committed' } })]);
    });

    it(`${names.required}, ${names.requiresNew} and ${names.nestedRolledBack}: the committed changes, not the rolled-back one`, async () => {
      const order = await seed();
      const other = await seed();
      const response = await t().request(path(`/${order.id}/propagations/${other.id}`), { method: 'PATCH', json: { label: 'ok' }, headers: ALICE });
      expect(response.status).toBe(200);
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'outer-ok', note: null });
      expect(await orders().findOneByOrFail({ id: other.id })).toMatchObject({ note: 'new-ok' });

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'success']]);
      const changes = [...rows[0]!.changes!].sort((a, b) => Number(a.id) - Number(b.id));
      expect(changes).toEqual([update(order.id, { status: { from: 'new', to: 'outer-ok' } }), update(other.id, { note: { from: null, to: 'new-ok' } })]);
      expect(JSON.stringify(rows)).not.toContain('nested-ok');
      expect(await journalRows()).toBe(0);
    });

    it(`the outer transaction rolls back after a ${names.requiresNew} one committed: a failure intent with only the committed change`, async () => {
      const order = await seed();
      const other = await seed();
      const response = await t().request(path(`/${order.id}/propagations/${other.id}`), { method: 'PATCH', json: { label: 'rb', refuse: true }, headers: ALICE });
      expect(response.status).toBe(409);
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });
      // SQLite: TypeORM runs every query runner on one connection, where the "new" transaction is a savepoint of the outer one.
      const independent = kind !== 'sqlite';
      expect(await orders().findOneByOrFail({ id: other.id })).toMatchObject({ note: independent ? 'new-rb' : null });

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'intent', 'failure']]);
      expect(rows[0]!.changes).toEqual(independent ? [update(other.id, { note: { from: null, to: 'new-rb' } })] : []);
      expect(JSON.stringify(rows.map((row) => row.changes))).not.toMatch(/outer-rb|nested-rb/);
      expect(await journalRows()).toBe(0);
    });

    it('@Transactional() on the @Audited handler itself: one success intent claiming the insert', async () => {
      const response = await t().request(path(), { method: 'POST', json: { note: `${tag}-created` }, headers: ALICE });
      expect(response.status).toBe(201);
      const created = (await response.json()) as Order;

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.created', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(created.id) });
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(created.id), operation: 'insert', fields: { note: { to: `${tag}-created` } } });
    });

    library.calledFromHandler?.(s);
  });

  describe('an @Audited provider method inside a @Transactional() method', () => {
    it('from an @Audited handler: its intent claims its change, the handler’s the rest', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/noted`), { method: 'PATCH', json: { status: 'noted', note: `${tag}-note` }, headers: ALICE });
      expect(response.status).toBe(200);

      const rows = await t().rows();
      expect(summary(rows).sort()).toEqual([
        ['order.noted', 'intent', 'success'],
        ['order.updated', 'intent', 'success'],
      ]);
      const noted = rows.find((row) => row.action === 'order.noted')!;
      const updated = rows.find((row) => row.action === 'order.updated')!;
      expect(noted).toMatchObject({ actorId: '1', requestId: response.headers.get('x-request-id') });
      expect(noted.changes).toEqual([update(order.id, { note: { from: null, to: `${tag}-note` } })]);
      expect(updated.changes).toEqual([update(order.id, { status: { from: 'new', to: 'noted' } })]);
    });

    it('from an @Audited handler, the transaction rolled back after it: no row records the change', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/noted`), { method: 'PATCH', json: { status: 'noted-rb', note: `${tag}-note-rb`, refuse: true }, headers: ALICE });
      expect(response.status).toBe(409);
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ status: 'new', note: null });

      const rows = await t().rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
      expect(rows.find((row) => row.action === 'order.updated')).toMatchObject({ outcome: 'failure' });
      expect(JSON.stringify(rows)).not.toMatch(new RegExp(`noted-rb|${tag}-note-rb`));
    });

    it('from a script: its intent, and a fallback event for the rest', async () => {
      const order = await seed();
      await service().setStatusAndNote(order.id, 'script-noted', 'script-note', false);

      // The unit ended inside the transaction: its event is stored once that has committed, after the call returned.
      const rows = await settledRows(2);
      expect(summary(rows).sort()).toEqual([
        ['order.noted', 'intent', 'success'],
        ['order.updated', 'change', 'success'],
      ]);
      expect(rows.find((row) => row.action === 'order.noted')!.changes).toEqual([update(order.id, { note: { from: null, to: 'script-note' } })]);
      expect(rows.find((row) => row.action === 'order.updated')!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'script-noted' } })]);
      expect(await journalRows()).toBe(0);
    });

    // SQLite: TypeORM runs every query runner on one connection, the module's own writes
    // included, so that these events are written inside the app's transaction and rolled
    // back with it, with or without a library (docs/capture-rules.md#limits).
    it.skipIf(kind === 'sqlite')('from a script, one that changed nothing, the transaction rolled back after it: its intent is stored', async () => {
      const order = await seed();
      await expect(service().checkThenRefuse(order.id)).rejects.toThrow(OrderRefused);

      const rows = await settledRows(1);
      expect(summary(rows)).toEqual([['order.checked', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorType: 'system', source: 'job', targetId: String(order.id), changes: [] });
    });

    it.skipIf(kind === 'sqlite')('runAs() that only logs, the transaction rolled back after it: its event is stored', async () => {
      const order = await seed();
      await expect(service().runAsThenRefuse(order.id)).rejects.toThrow(OrderRefused);

      const rows = await settledRows(1);
      expect(summary(rows)).toEqual([['order.looked-at', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorType: 'service', actorId: 'importer', source: 'job', targetId: String(order.id) });
    });

    library.providerInTransaction?.(s);
  });

  describe('outside an @Audited handler', () => {
    it('from a route that is not audited: one fallback change event with the request’s actor', async () => {
      const order = await seed();
      const response = await t().request(path(`/${order.id}/plain`), { method: 'PATCH', json: { status: 'plain' }, headers: ALICE });
      expect(response.status).toBe(200);

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'change', 'success']]);
      expect(rows[0]).toMatchObject({ actorId: '1', targetId: String(order.id), requestId: response.headers.get('x-request-id') });
      expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'plain' } })]);
    });

    it('from a script, committed: one fallback change event of the system', async () => {
      const order = await seed();
      await service().setStatus(order.id, 'scripted');

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.updated', 'change', 'success']]);
      expect(rows[0]).toMatchObject({ actorType: 'system', targetId: String(order.id) });
      expect(rows[0]!.changes).toEqual([update(order.id, { status: { from: 'new', to: 'scripted' } })]);
      expect(await journalRows()).toBe(0);
    });

    it('from a script, rolled back: no row', async () => {
      const order = await seed();
      await expect(service().setStatusThenRefuse(order.id, 'script-rb')).rejects.toThrow(OrderRefused);
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');
      expect(await t().rows()).toEqual([]);
    });

    it('AuditService.log() inside a @Transactional() method, committed: one intent claiming the insert, no fallback row', async () => {
      const order = await service().importWithLog(`${tag}-log`, false);

      const rows = await t().rows();
      expect(summary(rows)).toEqual([['order.imported', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorType: 'system', targetId: String(order.id) });
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert', fields: { note: { to: `${tag}-log` } } });
    });

    it('AuditService.log() inside a @Transactional() method that rolls back: no row at all', async () => {
      await expect(service().importWithLog(`${tag}-log-rb`, true)).rejects.toThrow(OrderRefused);
      expect(await orders().findOneBy({ note: `${tag}-log-rb` })).toBeNull();
      expect(await t().rows()).toEqual([]);
    });

    library.outsideHandler?.(s);
  });

  return s;
}
