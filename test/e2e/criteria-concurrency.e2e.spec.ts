import mysql from 'mysql2/promise';
import pg from 'pg';
import type { AfterQueryEvent, EntitySubscriberInterface } from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditChange, AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { MARIADB, POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const EXPIRER = { type: 'system', id: 'expirer' } as const;

/** A second connection to the test database, outside the app and its pool. */
interface OtherConnection {
  insertOrder(status: string): Promise<void>;
  close(): Promise<void>;
}

async function otherConnection(db: TestDatabase): Promise<OtherConnection> {
  if (db.kind === 'postgres') {
    const client = new pg.Client(POSTGRES);
    await client.connect();
    await client.query(`SET search_path TO "${(db.options as { schema: string }).schema}"`);
    return {
      insertOrder: async (status) => void (await client.query('INSERT INTO orders (status, total) VALUES ($1, 1)', [status])),
      close: () => client.end(),
    };
  }
  const connection = await mysql.createConnection({ ...MARIADB, database: db.options.database as string });
  return {
    insertOrder: async (status) => void (await connection.query('INSERT INTO orders (status, total) VALUES (?, 1)', [status])),
    close: () => connection.end(),
  };
}

/**
 * What the trail must say of a write by criteria: each row it changed is recorded by id,
 * or counted by a partial change of the entity; nothing recorded that it did not change.
 * `changedIds`: the ids of rows known to be changed; `changedCount`: how many were.
 */
function expectAccountedFor(rows: AuditLogEntity[], changedIds: number[], changedCount = changedIds.length): { recorded: string[]; unrecorded: number } {
  const changes = rows.flatMap((row) => row.changes ?? []) as AuditChange[];
  const recorded = changes.filter((change) => change.id !== null).map((change) => change.id!);
  const partial = changes.filter((change) => change.id === null);
  for (const change of partial) {
    expect(change).toMatchObject({ entity: 'Order', partial: true });
    expect(change.count).toBeGreaterThan(0);
  }
  const unrecorded = partial.reduce((sum, change) => sum + (change.count ?? 0), 0);
  expect(recorded.every((id) => changedIds.map(String).includes(id))).toBe(true);
  expect(recorded.length + unrecorded).toBe(changedCount);
  return { recorded, unrecorded };
}

const concurrent = databases().filter((kind) => kind !== 'sqlite');

describe.each(concurrent)('writes by criteria under concurrency on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let other: OtherConnection;
  /** Runs once, right after the next SELECT that reads the rows a write by criteria matches. */
  let afterRead: (() => Promise<void>) | undefined;
  /** The second connection's write, started by `afterRead`. */
  let concurrentWrite: Promise<void> | undefined;

  const readHook: EntitySubscriberInterface = {
    async afterQuery(event: AfterQueryEvent) {
      // That read names the table under its own name, as the write does: `FROM "<schema>"."orders" "orders"`.
      if (!afterRead || !/^\s*SELECT/i.test(event.query) || !/\bFROM\s+(?:["`][^"`]+["`]\.)?["`]orders["`]\s+["`]orders["`]/.test(event.query)) return;
      const hook = afterRead;
      afterRead = undefined;
      await hook();
    },
  };

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { maxCriteriaRows: 3 } });
    t.dataSource.subscribers.push(readHook);
    other = await otherConnection(db);
  });
  afterAll(async () => {
    await other?.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.dataSource.getRepository(Order).clear();
    await t.clearAudit();
  });
  afterEach(async () => {
    afterRead = undefined;
    await concurrentWrite;
    concurrentWrite = undefined;
  });

  const orders = () => t.dataSource.getRepository(Order);
  const job = <T>(fn: () => Promise<T>) => t.audit.runAs(EXPIRER, fn);
  const seed = (count: number, status: string) =>
    t.seed(() => orders().save(Array.from({ length: count }, (_, i) => ({ status, total: i }))));

  /**
   * Between the module's read and the write, another connection inserts a matching row
   * and commits. The read may have locked it out (the insert then waits for the write's
   * transaction); either way it is given a bounded time before the write goes on.
   */
  const insertBetweenReadAndWrite = (status: string) => {
    afterRead = async () => {
      concurrentWrite = other.insertOrder(status);
      await Promise.race([concurrentWrite, new Promise((resolve) => setTimeout(resolve, 500))]);
    };
  };

  it('update(criteria): a row committed between the read and the write is recorded or counted', async () => {
    const seeded = await seed(2, 'stale');
    insertBetweenReadAndWrite('stale');
    const result = await job(() => orders().update({ status: 'stale' }, { status: 'expired' }));
    await concurrentWrite;
    expect(afterRead).toBeUndefined();
    const changed = (await orders().findBy({ status: 'expired' })).map((order) => order.id);
    expect(result.affected).toBe(changed.length);
    const { recorded, unrecorded } = expectAccountedFor(await t.rows(), changed);
    expect(recorded.sort()).toEqual(seeded.map((order) => String(order.id)).sort());
    // PostgreSQL cannot lock a row that does not exist yet: the write changes it, and it is counted.
    // MariaDB's read locks the gaps too: the insert waits for the write's commit and keeps its status.
    expect(unrecorded).toBe(kind === 'postgres' ? 1 : 0);
    expect(await orders().countBy({ status: 'stale' })).toBe(kind === 'postgres' ? 0 : 1);
  });

  it('delete(criteria): a row committed between the read and the write is recorded or counted', async () => {
    const seeded = await seed(2, 'doomed');
    insertBetweenReadAndWrite('doomed');
    const result = await job(() => orders().delete({ status: 'doomed' }));
    await concurrentWrite;
    // Three rows had the status (two seeded, one inserted by the other connection): those left were not deleted.
    const deleted = 3 - (await orders().countBy({ status: 'doomed' }));
    expect(result.affected).toBe(deleted);
    const { recorded, unrecorded } = expectAccountedFor(await t.rows(), seeded.map((order) => order.id), deleted);
    expect(recorded.sort()).toEqual(seeded.map((order) => String(order.id)).sort());
    expect(unrecorded).toBe(kind === 'postgres' ? 1 : 0);
  });

  it('softDelete(criteria): a row committed between the read and the write is recorded or counted', async () => {
    await seed(2, 'idle');
    insertBetweenReadAndWrite('idle');
    await job(() => orders().softDelete({ status: 'idle' }));
    await concurrentWrite;
    const changed = (await orders().find({ withDeleted: true, where: { status: 'idle' } })).filter((order) => order.deletedAt).map((order) => order.id);
    const { unrecorded } = expectAccountedFor(await t.rows(), changed);
    expect(unrecorded).toBe(kind === 'postgres' ? 1 : 0);
  });

  it('past maxCriteriaRows, the rows neither recorded nor read are counted, concurrent ones too', async () => {
    await seed(4, 'bulk');
    insertBetweenReadAndWrite('bulk');
    const result = await job(() => orders().update({ status: 'bulk' }, { status: 'archived' }));
    await concurrentWrite;
    const changed = (await orders().findBy({ status: 'archived' })).map((order) => order.id);
    expect(result.affected).toBe(changed.length);
    const { recorded, unrecorded } = expectAccountedFor(await t.rows(), changed);
    expect(recorded).toHaveLength(3);
    // The read stops at the bound (plus one): rows past it are not locked, whatever the database.
    expect(unrecorded).toBe(changed.length - 3);
    expect(changed.length).toBeGreaterThanOrEqual(4);
  });

  it('a write by criteria that matches no row records nothing', async () => {
    await seed(1, 'kept');
    await job(() => orders().update({ status: 'absent' }, { status: 'expired' }));
    expect(await t.rows()).toEqual([]);
  });
});
