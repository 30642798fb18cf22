// An app's own TypeORM subscriber that writes a row with raw SQL when a transaction commits
// (an outbox or "changed" log: `afterTransactionCommit` -> `dataSource.query('INSERT …')`)
// writes one row per transaction. The transaction the module opens around that raw write
// fires no transaction events of TypeORM's: otherwise its commit would fire the
// subscriber again, without end — on PostgreSQL and MariaDB each link holding a pooled
// connection until the pool is exhausted and the app hangs.
import type { EntitySubscriberInterface } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { sleep } from '../support/paused-instances.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

async function appOn(db: TestDatabase, pool?: number): Promise<TestApp> {
  let options = db.options as TestDatabase['options'] & { extra?: Record<string, unknown> };
  if (db.kind === 'postgres') options = { ...options, extra: { ...options.extra, options: `-c search_path=${(db.options as { schema: string }).schema}`, ...(pool ? { max: pool } : {}) } };
  if (db.kind === 'mariadb' && pool) options = { ...options, extra: { ...options.extra, connectionLimit: pool } };
  const t = await createTestApp({ db: { ...db, options } as TestDatabase, adapter: 'express' });
  await t.dataSource.query('CREATE TABLE commit_log (n integer)');
  await t.dataSource.query('CREATE TABLE raw_counter (v integer)');
  await t.dataSource.query('INSERT INTO raw_counter (v) VALUES (0)');
  return t;
}

/** Writes a commit_log row after every commit, with raw SQL on the data source (at most `bound` times, for the test). */
function commitLogger(t: TestApp, bound: number): { fired: () => number; remove: () => void } {
  let fired = 0;
  const subscriber: EntitySubscriberInterface = {
    afterTransactionCommit() {
      fired++;
      if (fired > bound) return;
      return t.dataSource.query('INSERT INTO commit_log (n) VALUES (1)').then(() => undefined);
    },
  };
  t.dataSource.subscribers.push(subscriber);
  return { fired: () => fired, remove: () => t.dataSource.subscribers.splice(t.dataSource.subscribers.indexOf(subscriber), 1) };
}

describe.each(databases())('an app subscriber writing raw SQL after each commit, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await appOn(db);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('one app transaction: the subscriber fires once, one commit_log row', async () => {
    const logger = commitLogger(t, 5);
    try {
      await t.dataSource.transaction((manager) => manager.query('UPDATE raw_counter SET v = v + 1'));
      await sleep(500);
    } finally {
      logger.remove();
    }
    await t.app.get(AuditWriter).drain(10_000);
    const rows = Number(((await t.dataSource.query('SELECT COUNT(*) AS c FROM commit_log')) as Array<{ c: number | string }>)[0]!.c);
    expect({ fired: logger.fired(), rows }).toEqual({ fired: 1, rows: 1 });
  });
});

describe.each(databases().filter((kind) => kind !== 'sqlite'))('the same subscriber, unbounded, with a pool of 4 connections, on %s', (kind) => {
  it('the app transaction returns', { timeout: 30_000 }, async () => {
    const db = await createTestDatabase(kind);
    const t = await appOn(db, 4);
    const logger = commitLogger(t, 1_000);
    let outcome: string;
    try {
      const done = t.dataSource.transaction((manager) => manager.query('UPDATE raw_counter SET v = v + 1'));
      outcome = await Promise.race([done.then(() => 'returned'), sleep(5_000).then(() => 'still pending after 5 s')]);
    } finally {
      logger.remove();
      // The hung links hold no lock (each is past its COMMIT): the database goes first, then the app, bounded.
      await db.drop().catch(() => undefined);
      await Promise.race([t.close().catch(() => undefined), sleep(3_000)]);
    }
    expect({ outcome, fired: logger.fired() }).toEqual({ outcome: 'returned', fired: 1 });
  });
});
