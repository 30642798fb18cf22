import { AsyncResource } from 'node:async_hooks';
import { Logger } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { polled } from '../support/within.js';

/**
 * Claims checked: "a transaction's journal INSERT rides on its COMMIT; nothing else is affected
 * (savepoints, nested transactions, failOpen)".
 *
 * With failOpen, events stored inside the caller's transaction go through a SAVEPOINT
 * (AuditRecorder.storeNow → manager.transaction). When that happens inside the module's
 * own BeforeTransactionCommit work (journalAtCommit → storeFallback → storeNow), *after* a
 * live unit's journal INSERT was handed to the COMMIT (sendWithCommit), the savepoint's
 * RELEASE fires AfterTransactionCommit → ChangeCapture.committed() → takeUnsent() → sendLate():
 * the journal INSERT is taken off the COMMIT and run on ANOTHER pooled connection, outside
 * the transaction, before the transaction has committed.
 *
 * The transaction then has one change of a live unit (runAs) and one made outside any unit
 * (code whose async context was lost, e.g. a callback bound elsewhere) — both legal.
 */
const outsideAnyUnit = AsyncResource.bind(<T>(fn: () => Promise<T>): Promise<T> => fn());

describe('failOpen: a savepoint during the commit work takes the journal INSERT off the COMMIT (postgres)', () => {
  let db: TestDatabase;
  let t: TestApp;
  let guard: string;
  let orders: string;
  let journal: string;

  /** The pooled connections in use, being opened or waited for. */
  const poolBusy = async () => {
    const pool = (t.dataSource.driver as unknown as { master: { totalCount: number; idleCount: number; waitingCount: number } }).master;
    return pool.totalCount - pool.idleCount + pool.waitingCount;
  };

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    t = await createTestApp({ db, adapter: 'express', audit: { failOpen: true } });
    orders = escapedTable(t.dataSource, t.dataSource.getMetadata(Order));
    journal = escapedTable(t.dataSource, t.dataSource.getMetadata(AuditJournalEntity));
    guard = orders.replace(/"orders"$/, '"hostile_guard"');
    // A constraint checked at COMMIT (deferred): a COMMIT can fail after the commit work ran.
    await t.dataSource.query(`CREATE TABLE ${guard} (order_id int REFERENCES ${orders}(id) DEFERRABLE INITIALLY DEFERRED)`);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());
  afterEach(() => vi.restoreAllMocks());

  it('a transaction whose COMMIT fails leaves no journal rows and no record of its changes', async () => {
    const errors = vi.spyOn(Logger.prototype, 'error');
    let journaled: unknown[] = [];
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      const failed = t.dataSource.transaction(async (manager) => {
        await manager.save(Order, manager.create(Order, { note: 'in the unit' }));
        await outsideAnyUnit(() => manager.save(Order, manager.create(Order, { note: 'outside any unit' })));
        await manager.query(`INSERT INTO ${guard} VALUES (999999)`); // fails at COMMIT
      });
      await expect(failed).rejects.toThrow(/foreign key/);
      // sendLate is not awaited: let it land before the unit is stored (every pooled connection back, none asked for).
      expect(await polled(poolBusy, (busy) => busy === 0, 5_000)).toBe(0);
      journaled = await t.dataSource.query(`SELECT "id" FROM ${journal}`);
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The transaction rolled back: no order exists.
    expect(await t.dataSource.getRepository(Order).count()).toBe(0);
    // The defect this guards against: [['order.created', 'in the unit']] — a record of an order that never existed
    // (the uncertain COMMIT is settled by the journal row that sendLate committed out of band).
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, (row.changes?.[0]?.fields['note'] as { to?: unknown } | undefined)?.to])).toEqual([]);
    // The defect this guards against: one journal row of the rolled-back transaction, committed on another connection.
    expect(journaled).toEqual([]);
    const messages = errors.mock.calls.map((call) => String(call[0]));
    expect(messages.filter((message) => message.includes('committed without its audit journal rows'))).toEqual([]);
  });

  it('a transaction that commits: its journal rows ride on the COMMIT, nothing is written out of band', async () => {
    const errors = vi.spyOn(Logger.prototype, 'error');
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      await t.dataSource.transaction(async (manager) => {
        await manager.save(Order, manager.create(Order, { note: 'in the unit' }));
        await outsideAnyUnit(() => manager.save(Order, manager.create(Order, { note: 'outside any unit' })));
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const messages = errors.mock.calls.map((call) => String(call[0]));
    // The defect this guards against: "Audit: a transaction committed without its audit journal rows (this TypeORM
    // version commits in a way the module did not expect); writing them now".
    expect((await t.rows()).map((row) => row.action).sort()).toEqual(['order.created', 'order.created']);
    expect(await t.dataSource.query(`SELECT "id" FROM ${journal}`)).toEqual([]);
    expect(messages.filter((message) => message.includes('committed without its audit journal rows'))).toEqual([]);
  });
});

describe('failOpen: the leftover journal row of a committed transaction is recovered as a second record (postgres)', () => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    t = await createTestApp({ db, adapter: 'express', audit: { failOpen: true, recoverAfter: 1_000 } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('each order is recorded once, also after the journal recovery has run', async () => {
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      await t.dataSource.transaction(async (manager) => {
        await manager.save(Order, manager.create(Order, { note: 'in the unit' }));
        await outsideAnyUnit(() => manager.save(Order, manager.create(Order, { note: 'outside any unit' })));
      });
    });
    // Own orphans older than 1 s are recovered every 500 ms.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const rows = await t.rows();
    const notes = rows.map((row) => (row.changes?.[0]?.fields['note'] as { to?: unknown } | undefined)?.to);
    // The defect this guards against: 'in the unit' twice — once stored by its unit, once replayed from the journal
    // row that sendLate wrote outside the transaction (after the unit had deleted its rows).
    expect(notes.sort()).toEqual(['in the unit', 'outside any unit']);
  });
});
