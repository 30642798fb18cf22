import { generateKeyPairSync } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { classifyDatabaseError } from '../../lib/storage/database-errors.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { NestedOrderWriter, RecordPathController } from '../app/record-path.controller.js';
import { latestDeadlock } from '../support/innodb-deadlock.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const { privateKey } = generateKeyPairSync('ed25519');
/** Requests in flight at once, all the time (each worker sends its next when its last is answered). */
const WORKERS = 48;
/** Requests in all, at most; the load also stops after LOAD_MS. */
const REQUESTS = 1_200;
const LOAD_MS = 20_000;

const combos = databases()
  .filter((kind) => kind !== 'sqlite')
  .flatMap((kind) => [
    [kind, 'off'],
    [kind, 'on'],
  ] as const);

/**
 * Writer batches in flight at once lock their own units' journal rows, and no other
 * batch's. On MariaDB the journal's DELETE by unit id was planned as a scan of the table
 * whenever the journal was small (the usual: it holds the rows of units in flight), and a
 * scanning DELETE locks every row it reads: two batches in flight each waited for a row of
 * the other's units, and one was rolled back as a deadlock (InnoDB's LATEST DETECTED
 * DEADLOCK: two `DELETE FROM audit_journal WHERE unit_id IN (…)`, each waiting for an X
 * lock on a PRIMARY record the other held). The retry hid it, until a batch met it twice.
 */
describe.each(combos)('writer batches under concurrent requests on %s, integrity %s', (kind, integrity) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const audit: AuditModuleOptions =
      integrity === 'on' ? { integrity: { signingKey: privateKey, origin: 'audit.example.test/journal-locks', sequenceEvery: 50 } } : {};
    t = await createTestApp({ db, adapter: 'express', audit, controllers: [RecordPathController], providers: [NestedOrderWriter] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });


  it(`${WORKERS} audited PATCHes in flight at once: no batch loses to another transaction, every request is answered 200 and stored once`, async () => {
    // Each try of a batch, observed: those that lost to another transaction (and were tried again).
    const writer = t.app.get(AuditWriter) as unknown as { store: (...args: unknown[]) => Promise<unknown> };
    const store = writer.store.bind(writer);
    const lost: string[] = [];
    writer.store = async (...args: unknown[]) => {
      try {
        return await store(...args);
      } catch (error) {
        if (classifyDatabaseError(error) === 'transient') lost.push(`${(error as Error).message}\n${await latestDeadlock([db])}`);
        throw error;
      }
    };
    const orders = await t.seed(() => t.dataSource.getRepository(Order).save(Array.from({ length: WORKERS }, (_, i) => ({ status: 'new', total: i }))));

    const statuses: number[] = [];
    const deadline = Date.now() + LOAD_MS;
    let sent = 0;
    try {
      await Promise.all(
        orders.map(async (order) => {
          while (sent < REQUESTS && Date.now() < deadline) {
            const i = sent++;
            const response = await t.request(`/record-path/orders/${order.id}/note`, {
              method: 'PATCH',
              json: { note: `n-${i}` },
              headers: { authorization: `Bearer user-${i % 20}`, 'x-request-id': `locks-${i}` },
            });
            statuses.push(response.status);
          }
        }),
      );
    } finally {
      writer.store = store;
    }

    expect(lost).toEqual([]);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(await t.dataSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(statuses.length);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  }, 60_000);
});

describe.each(databases().filter((kind) => kind === 'mariadb'))('a journal table without the unit id index, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  // A fresh app each: its statements name the index until the first refusal.
  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [RecordPathController], providers: [NestedOrderWriter] });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the writer stops naming the index and stores the unit, its journal rows deleted', async () => {
    const [order] = await t.seed(() => t.dataSource.getRepository(Order).save([{ status: 'new', total: 1 }]));
    await t.dataSource.query('DROP INDEX `idx_audit_journal_unit` ON `audit_journal`');
    for (const note of ['first', 'second']) {
      const response = await t.request(`/record-path/orders/${order!.id}/note`, { method: 'PATCH', json: { note }, headers: { authorization: 'Bearer user-1' } });
      expect(response.status).toBe(200);
    }
    expect(await t.dataSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(2);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it(`${WORKERS} audited PATCHes at once, the first since the index went: every one answered 200 and stored, the journal left empty`, async () => {
    const orders = await t.seed(() => t.dataSource.getRepository(Order).save(Array.from({ length: WORKERS }, (_, i) => ({ status: 'new', total: i }))));
    await t.dataSource.query('DROP INDEX `idx_audit_journal_unit` ON `audit_journal`');
    // Each batch's statements name the index until one is refused: batches in flight then are refused too.
    const statuses = await Promise.all(
      orders.map(async (order, i) => {
        const response = await t.request(`/record-path/orders/${order.id}/note`, { method: 'PATCH', json: { note: `n-${i}` }, headers: { authorization: `Bearer user-${i % 20}` } });
        return response.status;
      }),
    );
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    expect(await t.dataSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(WORKERS);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
