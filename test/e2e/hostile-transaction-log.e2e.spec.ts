import type { EntityManager } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * `audit.log()` outside any unit of work, in and around transactions: the event commits
 * and rolls back with the transaction it was logged in, and a manager whose transaction
 * is over is no reason to lose (or fail) an event.
 */
describe.each(databases())('audit.log() and transactions outside a unit of work on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('an event logged inside a savepoint that rolls back is in no record, although the outer transaction commits', async () => {
    let discardedId = 0;
    await t.dataSource.transaction(async (manager) => {
      await manager.save(Order, manager.create(Order, { status: 'kept', note: 'outer' }));
      await manager
        .transaction(async (inner) => {
          const order = await inner.save(Order, inner.create(Order, { status: 'discarded', note: 'inner' }));
          discardedId = order.id;
          await t.audit.log({ action: 'order.discarded', target: { type: 'order', id: String(order.id) }, reason: 'inner work' });
          throw new Error('the inner work rolls back');
        })
        .catch(() => undefined);
    });

    // The inner order never existed; the outer one did.
    expect(await t.dataSource.getRepository(Order).findOneBy({ id: discardedId })).toBeNull();
    expect(await t.dataSource.getRepository(Order).findOneBy({ note: 'outer' })).not.toBeNull();

    const rows = await t.rows();
    expect(rows.map((row) => row.action)).toEqual(['order.created']);
  });

  it('an event logged inside a savepoint that commits is written with the outer transaction, claiming its target’s change', async () => {
    let keptId = 0;
    await t.dataSource.transaction(async (manager) => {
      await manager.transaction(async (inner) => {
        const order = await inner.save(Order, inner.create(Order, { status: 'kept', note: 'inner' }));
        keptId = order.id;
        await t.audit.log({ action: 'order.kept', target: { type: 'order', id: String(order.id) } });
      });
    });

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.changes?.map((change) => change.id)])).toEqual([['order.kept', 'intent', [String(keptId)]]]);
  });
});

/** A query runner that is released after its transaction: PostgreSQL and MariaDB (SQLite keeps one runner for everything). */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('audit.log() with the manager of an ended transaction on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('log() given the manager of a transaction that has ended stores the event (it is outside any transaction now)', async () => {
    let finished: EntityManager | undefined;
    await t.dataSource.transaction(async (manager) => {
      await manager.save(Order, manager.create(Order, { status: 'paid', note: 'ended-tx' }));
      finished = manager;
    });

    await expect(t.audit.log({ action: 'order.receipt-sent', reason: 'after the commit' }, { manager: finished })).resolves.toEqual(
      expect.any(String),
    );
    const rows = await t.rows();
    expect(rows.map((row) => row.action).sort()).toEqual(['order.created', 'order.receipt-sent']);
  });
});
