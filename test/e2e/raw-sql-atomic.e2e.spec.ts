// A raw SQL write sent outside any transaction (`dataSource.query('UPDATE …')`, the way
// many handlers write) commits with its record or not at all: the module runs it in a
// transaction of its own, whose COMMIT carries the journal row (in a unit of work) or the
// fallback event (outside one). Before, the server committed the write first and the
// record was written after it, on its own: a crash or a failed write in between left a
// committed change without its record. PostgreSQL and MariaDB: TypeORM runs every query
// of a SQLite data source on its one connection, where a transaction of the module's would
// take in what other requests run meanwhile (there the record still follows the write).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataSource, type EntitySubscriberInterface } from 'typeorm';
import { AuditJournalEntity, type AuditModuleOptions } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { sleep } from '../support/paused-instances.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { RawSqlController } from '../app/raw-sql.controller.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';

/** Statements that make every INSERT into `table` fail (and undo that), per database. */
function rejectInserts(kind: DatabaseKind, table: string): { on: string[]; off: string[] } {
  const name = `reject_${table}`;
  if (kind === 'mariadb') {
    return {
      on: [`CREATE TRIGGER ${name} BEFORE INSERT ON ${table} FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected ${table} failure'`],
      off: [`DROP TRIGGER IF EXISTS ${name}`],
    };
  }
  return {
    on: [
      `CREATE OR REPLACE FUNCTION ${name}() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected ${table} failure'; END $$ LANGUAGE plpgsql`,
      `CREATE TRIGGER ${name} BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}()`,
    ],
    off: [`DROP TRIGGER IF EXISTS ${name} ON ${table}`],
  };
}

/** An app (with `audit` options) over a fresh database holding `raw_counter`, reset before each test of the suite. */
function counterApp(kind: DatabaseKind, audit: AuditModuleOptions = {}, tables: string[] = []) {
  const env: { db?: TestDatabase; t?: TestApp } = {};
  beforeAll(async () => {
    env.db = await createTestDatabase(kind);
    // The raw statements name tables unqualified: PostgreSQL finds them in the test's schema.
    const db = env.db;
    const options = kind === 'postgres' ? { ...db.options, extra: { ...db.options.extra, options: `-c search_path=${(db.options as { schema: string }).schema}` } } : db.options;
    env.t = await createTestApp({ db: { ...db, options }, adapter: 'express', controllers: [RawSqlController], audit });
    await env.t.dataSource.query('CREATE TABLE raw_counter (v integer)');
    for (const statement of tables) await env.t.dataSource.query(statement);
  });
  afterAll(async () => {
    await env.t?.close();
    await env.db?.drop();
  });
  beforeEach(async () => {
    const t = env.t!;
    await t.app.get(AuditWriter).drain(10_000);
    await t.dataSource.query('DELETE FROM raw_counter');
    await t.dataSource.query('INSERT INTO raw_counter (v) VALUES (0)');
    await t.clearAudit();
    await t.dataSource.getRepository(AuditJournalEntity).clear();
  });
  const app = {
    get t(): TestApp {
      return env.t!;
    },
    counter: async (table = 'raw_counter'): Promise<number> => Number(((await app.t.dataSource.query(`SELECT v FROM ${table}`)) as Array<{ v: number }>)[0]?.v ?? -1),
    journal: () => app.t.dataSource.getRepository(AuditJournalEntity).count(),
    summary: async () => (await app.t.rows()).map((row) => ({ action: row.action, kind: row.kind, outcome: row.outcome, changes: row.changes?.length ?? 0 })),
    /** Runs `work` while every INSERT into `table` fails. */
    async failingInserts<T>(table: string, work: () => Promise<T>): Promise<T> {
      const { on, off } = rejectInserts(kind, table);
      for (const statement of on) await app.t.dataSource.query(statement);
      try {
        return await work();
      } finally {
        for (const statement of off) await app.t.dataSource.query(statement);
      }
    },
  };
  return app;
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('a raw SQL write outside any transaction commits with its record, on %s', (kind) => {
  const app = counterApp(kind);
  const { counter, journal, summary } = app;
  const failingInserts = app.failingInserts.bind(app);

  it('in an @Audited handler: its journal row cannot be written, so the write does not commit and the request fails', async () => {
    const response = await failingInserts('audit_journal', () => app.t.request('/raw', { method: 'POST', json: { statements: ['UPDATE raw_counter SET v = v + 1'] } }));
    await app.t.app.get(AuditWriter).drain(10_000);
    // The attempt is recorded as failed, with no change: none was committed.
    expect({ status: response.status, counter: await counter(), records: await summary(), journal: await journal() }).toEqual({
      status: 500,
      counter: 0,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'failure', changes: 0 }],
      journal: 0,
    });
  });

  it('in an @Audited handler: the write and its journal row commit together, and the request is recorded once with the change', async () => {
    const response = await app.t.request('/raw', { method: 'POST', json: { statements: ['UPDATE raw_counter SET v = v + 1'] } });
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, counter: await counter(), records: await summary(), journal: await journal() }).toEqual({
      status: 201,
      counter: 1,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: 1 }],
      journal: 0,
    });
  });

  it('outside any unit: its fallback event cannot be stored, so the write does not commit and query() fails', async () => {
    const outcome = await failingInserts('audit_log', () =>
      app.t.dataSource.query('UPDATE raw_counter SET v = v + 1').then(
        () => 'committed',
        (error: Error) => error.message,
      ),
    );
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ outcome, counter: await counter(), records: await summary() }).toEqual({ outcome: expect.stringContaining('injected audit_log failure'), counter: 0, records: [] });
  });

  it('a raw read, and a write of a table the module does not record, run as they are (no transaction of the module)', async () => {
    const statements: string[] = [];
    const query = app.t.dataSource.driver.createQueryRunner('master').constructor.prototype as { query: (...args: unknown[]) => Promise<unknown> };
    const original = query.query;
    query.query = function (this: unknown, ...args: unknown[]) {
      statements.push(String(args[0]));
      return original.apply(this, args);
    };
    try {
      await app.t.dataSource.query('SELECT v FROM raw_counter');
      await app.t.dataSource.query('UPDATE audit_instance SET heartbeat_at = heartbeat_at WHERE 1 = 0');
    } finally {
      query.query = original;
    }
    expect(statements.filter((sql) => /^(BEGIN|START TRANSACTION|COMMIT|SAVEPOINT)/i.test(sql.trim()))).toEqual([]);
  });
});

describe.each(databases().filter((kind) => kind !== 'sqlite'))('fail-open: a raw SQL write outside any transaction, on %s', (kind) => {
  const app = counterApp(kind, { failOpen: true });

  it('outside any unit, its fallback event cannot be stored: the write stands, query() resolves (the failure is logged)', async () => {
    const outcome = await app.failingInserts('audit_log', () =>
      app.t.dataSource.query('UPDATE raw_counter SET v = v + 1').then(
        () => 'resolved',
        (error: Error) => `rejected: ${error.message}`,
      ),
    );
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ outcome, counter: await app.counter(), records: await app.summary() }).toEqual({ outcome: 'resolved', counter: 1, records: [] });
  });

  it("outside any unit: the write and its fallback event commit together, and the app's subscribers see no transaction events", async () => {
    const events: string[] = [];
    const subscriber: EntitySubscriberInterface = {
      afterTransactionStart: () => void events.push('start'),
      afterTransactionCommit: () => void events.push('commit'),
      afterTransactionRollback: () => void events.push('rollback'),
    };
    app.t.dataSource.subscribers.push(subscriber);
    try {
      await app.t.dataSource.query('UPDATE raw_counter SET v = v + 1');
    } finally {
      app.t.dataSource.subscribers.splice(app.t.dataSource.subscribers.indexOf(subscriber), 1);
    }
    expect({ events, counter: await app.counter(), records: await app.summary() }).toEqual({
      events: [],
      counter: 1,
      records: [{ action: 'unknown.updated', kind: 'change', outcome: 'success', changes: 1 }],
    });
  });
});

describe.each(databases().filter((kind) => kind === 'mariadb'))('a raw TRUNCATE (committed at once, transaction or not), on %s', (kind) => {
  const app = counterApp(kind);

  it('in an @Audited handler whose journal row cannot be written: it runs as it is, and its change is recorded with the request', async () => {
    const response = await app.failingInserts('audit_journal', () => app.t.request('/raw', { method: 'POST', json: { statements: ['TRUNCATE TABLE raw_counter'] } }));
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, counter: await app.counter(), records: await app.summary(), journal: await app.journal() }).toEqual({
      status: 201,
      counter: -1,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: 1 }],
      journal: 0,
    });
  });
});

describe.each(databases().filter((kind) => kind !== 'sqlite'))('raw SQL the module runs as it is (its record follows it), on %s', (kind) => {
  const app = counterApp(kind, {}, kind === 'mariadb' ? ['CREATE TABLE legacy_counter (v integer) ENGINE=MyISAM', 'INSERT INTO legacy_counter (v) VALUES (0)'] : []);

  // MariaDB takes one statement per query unless the connection allows several.
  it.runIf(kind === 'postgres')("a script with its own BEGIN … COMMIT, in an @Audited handler whose journal row cannot be written: the script's change is recorded with the request", async () => {
    const statements = ['BEGIN; UPDATE raw_counter SET v = v + 1; COMMIT;'];
    const response = await app.failingInserts('audit_journal', () => app.t.request('/raw', { method: 'POST', json: { statements } }));
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, counter: await app.counter(), records: await app.summary() }).toEqual({
      status: 201,
      counter: 1,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: 1 }],
    });
  });

  it('two raw writes at once given one parameters array (a constant): both commit, both are recorded', async () => {
    const ONE = [1];
    const update = kind === 'postgres' ? 'UPDATE raw_counter SET v = v + $1 WHERE pg_sleep(0.2) IS NOT NULL' : 'UPDATE raw_counter SET v = v + ? WHERE SLEEP(0.2) = 0';
    await Promise.all([app.t.dataSource.query(update, ONE), app.t.dataSource.query(update, ONE)]);
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ counter: await app.counter(), records: (await app.t.rows()).map((row) => row.action) }).toEqual({ counter: 2, records: ['unknown.updated', 'unknown.updated'] });
  });

  it.runIf(kind === 'mariadb')('a table whose writes a ROLLBACK does not undo (MyISAM), in an @Audited handler whose journal row cannot be written: its change is recorded with the request', async () => {
    const response = await app.failingInserts('audit_journal', () => app.t.request('/raw', { method: 'POST', json: { statements: ['UPDATE legacy_counter SET v = v + 1'] } }));
    await app.t.app.get(AuditWriter).drain(10_000);
    expect({ status: response.status, counter: await app.counter('legacy_counter'), records: await app.summary() }).toEqual({
      status: 201,
      counter: 1,
      records: [{ action: 'orders.maintained', kind: 'intent', outcome: 'success', changes: 1 }],
    });
  });
});

describe.each(databases().filter((kind) => kind === 'mariadb'))('fail-open: the fallback event of a raw write loses a deadlock, on %s', (kind) => {
  const app = counterApp(kind, { failOpen: true }, ['CREATE TABLE deadlock_gate (id integer primary key, n integer) ENGINE=InnoDB', 'INSERT INTO deadlock_gate (id, n) VALUES (1, 0)']);

  it('InnoDB rolls the whole transaction back: query() fails, it does not resolve for a write that is gone', async () => {
    const t = app.t;
    // The fallback INSERT waits on a row another session holds.
    await t.dataSource.query('CREATE TRIGGER gate_audit_log BEFORE INSERT ON audit_log FOR EACH ROW UPDATE deadlock_gate SET n = n + 1 WHERE id = 1');
    // The other session, outside the app (no capture), made heavy, so that InnoDB picks the module's transaction as the victim.
    const other = new DataSource({ ...(t.dataSource.options as object), entities: [], subscribers: [], migrations: [], synchronize: false, migrationsRun: false } as never);
    await other.initialize();
    const x = other.createQueryRunner();
    let outcome: string;
    try {
      await x.query('CREATE TABLE IF NOT EXISTS heavy (n integer) ENGINE=InnoDB');
      await x.query('START TRANSACTION');
      await x.query('INSERT INTO heavy (n) SELECT seq FROM seq_1_to_500');
      await x.query('UPDATE deadlock_gate SET n = n + 1 WHERE id = 1');
      const write = t.dataSource.query('UPDATE raw_counter SET v = v + 1').then(
        () => 'resolved',
        (error: Error) => `rejected: ${error.message}`,
      );
      await sleep(500);
      // Closes the cycle: the other session waits on raw_counter, which the module's transaction holds while its fallback INSERT waits on the other.
      const closing = x.query('UPDATE raw_counter SET v = v + 100').catch(() => undefined);
      outcome = await write;
      await Promise.race([closing, sleep(5_000)]);
      await x.query('ROLLBACK');
    } finally {
      await x.release();
      await t.dataSource.query('DROP TRIGGER IF EXISTS gate_audit_log');
      await other.query('DROP TABLE IF EXISTS heavy');
      await other.destroy();
    }
    await t.app.get(AuditWriter).drain(10_000);
    expect({ outcome, counter: await app.counter() }).toEqual({ outcome: expect.stringMatching(/^rejected: .*[Dd]eadlock/), counter: 0 });
  });
});
