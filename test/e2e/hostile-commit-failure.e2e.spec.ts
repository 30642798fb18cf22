import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { refusePoisonedJournalRows } from '../support/refuse-journal.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/**
 * Claims checked: "a failing journal INSERT (now sent in the COMMIT's message) means nothing
 * commits", and of several live units plus a spilled one at one COMMIT. These pass:
 * kept as coverage of claim 6 not otherwise tested against a real server.
 */
describe.each(databases())('a refused journal INSERT at the COMMIT, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let journal: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { maxChangesPerEvent: 2 } });
    journal = await refusePoisonedJournalRows(t.dataSource, 'hostile_poison');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('dataSource.transaction(): the journal INSERT fails, so the transaction fails and nothing of it commits or is recorded', async () => {
    await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
      const tx = t.dataSource.transaction(async (manager) => {
        await manager.save(Order, manager.create(Order, { note: 'fine' }));
        await manager.save(Order, manager.create(Order, { note: 'poison' }));
      });
      await expect(tx).rejects.toThrow(/journal refused/);
    });
    expect(await t.dataSource.getRepository(Order).count()).toBe(0);
    expect(await t.rows()).toEqual([]);
    expect(await t.dataSource.query(`SELECT 1 FROM ${journal}`)).toEqual([]);
  });

  it('manual queryRunner: commitTransaction rejects, rollbackTransaction works, the runner is usable again', async () => {
    const runner = t.dataSource.createQueryRunner();
    try {
      await t.audit.runAs({ type: 'user', id: 'ann' }, async () => {
        await runner.startTransaction();
        await runner.manager.save(Order, runner.manager.create(Order, { note: 'poison' }));
        await expect(runner.commitTransaction()).rejects.toThrow(/journal refused/);
        await runner.rollbackTransaction();
        await runner.startTransaction();
        await runner.manager.save(Order, runner.manager.create(Order, { note: 'second' }));
        await runner.commitTransaction();
      });
    } finally {
      await runner.release();
    }
    const orders = await t.dataSource.getRepository(Order).find();
    expect(orders.map((order) => order.note)).toEqual(['second']);
    const rows = await t.rows();
    expect(rows.map((row) => (row.changes?.[0]?.fields['note'] as { to?: unknown }).to)).toEqual(['second']);
  });

  it('two live units and a spilled one in one transaction, with a savepoint: each change recorded once', async () => {
    await t.audit.runAs({ type: 'user', id: 'outer' }, async () => {
      await t.dataSource.transaction(async (manager) => {
        await manager.save(Order, manager.create(Order, { note: 'outer-1' }));
        await t.audit.runAs({ type: 'user', id: 'inner' }, async () => {
          await manager.transaction(async (savepoint) => {
            for (let i = 0; i < 12; i++) await savepoint.save(Order, savepoint.create(Order, { note: `inner-${i}` }));
          });
        }).catch(() => undefined);
        await manager.save(Order, manager.create(Order, { note: 'outer-2' }));
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const notes = (await t.rows()).flatMap((row) => (row.changes ?? []).map((change) => (change.fields['note'] as { to?: unknown }).to));
    expect(notes.sort()).toEqual(['outer-1', 'outer-2', ...Array.from({ length: 12 }, (_, i) => `inner-${i}`)].sort());
    expect(await t.dataSource.query(`SELECT 1 FROM ${journal}`)).toEqual([]);
  });
});
