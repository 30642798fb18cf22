import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { refusePoisonedJournalRows } from '../support/refuse-journal.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * A query builder's write made in a unit of work in no transaction of the app's: the module
 * runs it in a transaction of its own with its journal row. When that row cannot be
 * written, the write is rolled back with it and the app gets the error: no committed
 * change is left without its record.
 */
describe.each(databases())('a refused journal row of a write made in no transaction, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    await refusePoisonedJournalRows(t.dataSource, 'refuse_poison');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());
  const orders = () => t.dataSource.getRepository(Order);

  it('repository.insert(): rejected with the error, nothing inserted', async () => {
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      await expect(orders().insert({ note: 'poison-insert' })).rejects.toThrow(/journal refused/);
    });
    expect(await orders().countBy({ note: 'poison-insert' })).toBe(0);
  });

  it('an insert query builder with updateEntity(false): rejected with the error, nothing inserted', async () => {
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      await expect(t.dataSource.createQueryBuilder().insert().into(Order).values({ note: 'poison-ne' }).updateEntity(false).execute()).rejects.toThrow(/journal refused/);
    });
    expect(await orders().countBy({ note: 'poison-ne' })).toBe(0);
  });

  it('repository.update(): rejected with the error, the row unchanged', async () => {
    const order = await orders().save(orders().create({ note: 'fine' }));
    await t.clearAudit();
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      await expect(orders().update({ id: order.id }, { note: 'poison-update' })).rejects.toThrow(/journal refused/);
    });
    expect((await orders().findOneByOrFail({ id: order.id })).note).toBe('fine');
  });
});
