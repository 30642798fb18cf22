// A raw write sent without a query runner runs in a transaction the module opens for it
// with a plain BEGIN: at the session's own isolation level, as the statement would run
// alone, not at the data source's `isolationLevel` (TypeORM 1's option for the app's own
// transactions). At REPEATABLE READ an UPDATE that waited for a concurrent one would fail
// with "could not serialize access due to concurrent update"; in autocommit (READ
// COMMITTED) it follows the updated row.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { polled } from '../support/within.js';

describe.each(databases().filter((kind) => kind === 'postgres'))('a raw UPDATE racing another, with a default isolation level, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let schema: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    schema = (db.options as { schema: string }).schema;
    const options = { ...db.options, isolationLevel: 'REPEATABLE READ', extra: { ...db.options.extra, options: `-c search_path=${schema}` } } as TestDatabase['options'];
    t = await createTestApp({ db: { ...db, options }, adapter: 'express' });
    await t.dataSource.query('CREATE TABLE raw_counter (v integer)');
    await t.dataSource.query('INSERT INTO raw_counter (v) VALUES (0)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('waits for the other and applies its increment on top (as in autocommit), instead of failing', async () => {
    const holder = new pg.Client(POSTGRES);
    await holder.connect();
    try {
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await holder.query('BEGIN');
      await holder.query(`UPDATE "${schema}".raw_counter SET v = v + 1`);
      const raced = t.dataSource.query('UPDATE raw_counter SET v = v + 1').then(
        () => 'ok',
        (error: Error) => error.message,
      );
      // The raw UPDATE is waiting for the holder's row lock.
      const blocked = () => t.dataSource.query('SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [holderPid]) as Promise<unknown[]>;
      expect(await polled(blocked, (rows) => rows.length > 0, 5_000)).toHaveLength(1);
      await holder.query('COMMIT');
      const outcome = await raced;
      await t.app.get(AuditWriter).drain(10_000);
      const v = Number(((await t.dataSource.query('SELECT v FROM raw_counter')) as Array<{ v: number }>)[0]!.v);
      expect({ outcome, v }).toEqual({ outcome: 'ok', v: 2 });
    } finally {
      await holder.end();
    }
  });
});
