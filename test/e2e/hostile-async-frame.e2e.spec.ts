// Hostile tests of the module's single AsyncLocalStorage (units keyed by their owner, the
// transaction's manager, the query-builder flag): attacks on what separate storages would
// keep apart. All held.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe.runIf(databases().includes('postgres'))('hostile: one async frame for units, transactions and query builders (PostgreSQL)', () => {
  const dbs: TestDatabase[] = [];
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    for (let i = 0; i < 2; i++) dbs.push(await createTestDatabase('postgres'));
    a = await createTestApp({ db: dbs[0]!, adapter: 'express' });
    b = await createTestApp({ db: dbs[1]!, adapter: 'express' });
  });
  afterAll(async () => {
    await a?.close().catch(() => undefined);
    await b?.close().catch(() => undefined);
    for (const db of dbs) await db.drop();
  });

  const rowsOf = async (t: TestApp, prefix: string) =>
    (await t.rows()).filter((row) => row.action.startsWith(prefix)).map((row) => `${row.action} by ${row.actorType}:${row.actorId ?? '-'}`).sort();

  it('two apps: each sees its own innermost unit through nesting in both orders; the other app logs outside it', async () => {
    await a.audit.runAs({ type: 'user', id: 'ua' }, async () => {
      await tick();
      await b.audit.log({ action: 'two.b-outside' }); // B has no unit here
      await b.audit.runAs({ type: 'user', id: 'ub' }, async () => {
        await tick();
        await a.audit.log({ action: 'two.a-in-b' }); // A's innermost is still ua's
        await b.audit.log({ action: 'two.b-in-b' });
        await a.audit.runAs({ type: 'user', id: 'ua2' }, async () => {
          await tick();
          await a.audit.log({ action: 'two.a-inner' });
          await b.audit.log({ action: 'two.b-under-a-inner' });
        });
      });
    });
    expect(await rowsOf(a, 'two.')).toEqual(['two.a-in-b by user:ua', 'two.a-inner by user:ua2']);
    expect(await rowsOf(b, 'two.')).toEqual(['two.b-in-b by user:ub', 'two.b-outside by system:-', 'two.b-under-a-inner by user:ub']);
  });

  it('200 concurrent units, each logging after uneven awaits, keep their own actor', async () => {
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        a.audit.runAs({ type: 'user', id: `c${i}` }, async () => {
          for (let k = 0; k < i % 7; k++) await tick();
          if (i % 3 === 0) await sleep(i % 11);
          await a.audit.log({ action: 'conc.logged', target: { type: 'slot', id: String(i) } });
        }),
      ),
    );
    const rows = (await a.rows()).filter((row) => row.action === 'conc.logged');
    expect(rows).toHaveLength(200);
    expect(rows.filter((row) => row.actorId !== `c${row.targetId}`)).toEqual([]);
  });

  it('log() in dataSource.transaction() outside a unit is written in that transaction (rollback discards it), also as late work of an ended unit', async () => {
    await a.dataSource
      .transaction(async () => {
        await a.audit.log({ action: 'tx.rolled-back' });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    await a.dataSource.transaction(async () => {
      await a.audit.log({ action: 'tx.committed' });
    });
    // Work left running after its unit ended, starting a transaction.
    let late!: Promise<unknown>;
    await a.audit.runAs({ type: 'user', id: 'gone' }, async () => {
      late = sleep(50).then(() =>
        a.dataSource
          .transaction(async () => {
            await a.audit.log({ action: 'tx.late-rolled-back' });
            throw new Error('roll back');
          })
          .catch(() => undefined),
      );
    });
    await late;
    // A unit started inside a transaction: a transaction inside that unit logs into the unit.
    await a.dataSource.transaction(async (manager) => {
      await a.audit.runAs({ type: 'user', id: 'inner' }, async () => {
        await manager.getRepository(Order).save({ status: 'new' });
        await a.audit.log({ action: 'tx.unit-in-tx' });
      });
    });
    // A unit that ends inside the transaction holding its changes is stored once that
    // transaction has committed, in the background (AuditRecorder.end: awaiting it would deadlock).
    let right: string[] = [];
    for (const started = Date.now(); Date.now() - started < 3_000; await sleep(50)) {
      right = await rowsOf(a, 'tx.');
      if (right.length >= 2) break;
    }
    expect(right).toEqual(['tx.committed by system:-', 'tx.unit-in-tx by user:inner']);
  });

  it("app B's log() inside app A's transaction: not lost, stored in B", async () => {
    await a.dataSource.transaction(async () => {
      await b.audit.log({ action: 'cross.b-in-a-tx' });
    });
    await a.dataSource
      .transaction(async () => {
        await b.audit.log({ action: 'cross.b-in-a-rolled-back' });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await rowsOf(b, 'cross.')).toEqual(['cross.b-in-a-rolled-back by system:-', 'cross.b-in-a-tx by system:-']);
    expect(await rowsOf(a, 'cross.')).toEqual([]);
  });
});
