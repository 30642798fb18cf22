import { randomUUID } from 'node:crypto';
import mysql from 'mysql2';
import { DataSource, In, type DataSourceOptions, type EntityManager, type Logger as TypeOrmLogger } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AuditEntities,
  AuditJournalEntity,
  AuditLogEntity,
  AuditMigrations,
  AuditQueueFullError,
  AuditSubjectEntity,
  type AuditModuleOptions,
} from '../../lib/index.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';
import { writerEvent } from '../support/writer-events.js';

interface LoggedQuery {
  query: string;
  parameters: unknown[];
}

/** Every statement TypeORM sends, and the ones that failed. */
class QueryLog implements TypeOrmLogger {
  queries: LoggedQuery[] = [];
  failed: LoggedQuery[] = [];
  logQuery(query: string, parameters?: unknown[]): void {
    this.queries.push({ query, parameters: parameters ?? [] });
  }
  logQueryError(_error: string | Error, query: string, parameters?: unknown[]): void {
    this.failed.push({ query, parameters: parameters ?? [] });
  }
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
  clear(): void {
    this.queries = [];
    this.failed = [];
  }
  inserts(): LoggedQuery[] {
    return this.queries.filter((entry) => INSERT_INTO_LOG.test(entry.query));
  }
}

const INSERT_INTO_LOG = /INSERT INTO \S*audit_log/i;

/**
 * Rows one logged INSERT carried: one array per column on PostgreSQL (`unnest`; sent as
 * an array literal such as `{"0190…","0190…"}`, the first column being the uuid id), else
 * one parameter per value.
 */
function rowsIn(entry: LoggedQuery, width: number): number {
  const ids = entry.parameters[0];
  if (Array.isArray(ids)) return ids.length;
  if (typeof ids === 'string' && ids.startsWith('{')) return ids === '{}' ? 0 : ids.split(',').length;
  return entry.parameters.length / width;
}

async function openDataSource(db: TestDatabase, log?: QueryLog, overrides: Record<string, unknown> = {}): Promise<DataSource> {
  const dataSource = new DataSource({
    ...db.options,
    entities: [...AuditEntities],
    migrations: [...AuditMigrations],
    migrationsRun: true,
    ...(log ? { logging: ['query', 'error'], logger: log } : {}),
    ...overrides,
  } as DataSourceOptions);
  return dataSource.initialize();
}

const writerFor = (dataSource: DataSource, options: AuditModuleOptions = {}): AuditWriter =>
  new AuditWriter(dataSource, resolveAuditOptions(options));

const event = writerEvent;

/** An event the database refuses: too long an action (SQLite enforces no length: no action). */
const badEvent = (kind: DatabaseKind, action: string): AuditLogEntity =>
  kind === 'sqlite' ? event(action, { action: null as unknown as string }) : event(action, { action: `${action}.${'x'.repeat(300)}` });

async function addJournal(dataSource: DataSource, unitId: string, count: number): Promise<void> {
  await dataSource.getRepository(AuditJournalEntity).insert(
    Array.from({ length: count }, () => ({
      id: randomUUID(),
      unitId,
      instanceId: randomUUID(),
      createdAt: new Date(),
      entry: { changes: [] } as never,
    })),
  );
}

const journalRows = (dataSource: DataSource, unitIds: string[]): Promise<number> =>
  dataSource.getRepository(AuditJournalEntity).count({ where: { unitId: In(unitIds) } });

const storedRows = (dataSource: DataSource, action: string): Promise<number> =>
  dataSource.getRepository(AuditLogEntity).count({ where: { action } });

/**
 * The first two words of each statement logged, a DELETE's first only (`DELETE j FROM …` on
 * MySQL/MariaDB); the one-time reads of MySQL's max_allowed_packet and of PostgreSQL's
 * table layout left out.
 */
const sent = (log: QueryLog): string[] =>
  log.queries
    .filter((entry) => !/@@max_allowed_packet|relkind .* to_regclass/.test(entry.query))
    .map((entry) => entry.query.split(' ').slice(0, /^DELETE /i.test(entry.query) ? 1 : 2).join(' ').toUpperCase());

/**
 * The statements of an atomic INSERT + journal DELETE: one statement on PostgreSQL
 * (`WITH journal AS (DELETE …) INSERT …`), a transaction elsewhere.
 */
const atomically = (kind: DatabaseKind): string[] =>
  kind === 'postgres'
    ? ['WITH JOURNAL']
    : [kind === 'sqlite' ? 'BEGIN TRANSACTION' : 'START TRANSACTION', 'INSERT INTO', 'DELETE', 'COMMIT'];

/** The `audit_subject` rows of the given events, as `type:id` per event id. */
async function subjectsOf(dataSource: DataSource, rows: readonly AuditLogEntity[]): Promise<Record<string, string[]>> {
  const stored = await dataSource.getRepository(AuditSubjectEntity).find({ where: { eventId: In(rows.map((row) => row.id)) } });
  const byEvent: Record<string, string[]> = {};
  for (const row of rows) byEvent[row.id] = [];
  for (const subject of stored) byEvent[subject.eventId]!.push(`${subject.subjectType}:${subject.subjectId}`);
  for (const list of Object.values(byEvent)) list.sort();
  return byEvent;
}

/** How each promise settled, in order. */
const settle = (promises: Array<Promise<unknown>>): Promise<Array<PromiseSettledResult<unknown>>> => Promise.allSettled(promises);

const messageOf = (result: PromiseSettledResult<unknown>): string =>
  result.status === 'rejected' ? String((result.reason as Error).message) : '';

describe.each(databases())('AuditWriter on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const log = new QueryLog();

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await openDataSource(db, log);
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('stores a unit\'s events and deletes its journal rows in one transaction', async () => {
    const unit = randomUUID();
    const other = randomUUID();
    await addJournal(dataSource, unit, 3);
    await addJournal(dataSource, other, 1);
    log.clear();

    await writerFor(dataSource).write([event('atomic.one'), event('atomic.one')], { journalUnits: [unit] });
    const statements = sent(log);

    expect(await storedRows(dataSource, 'atomic.one')).toBe(2);
    expect(await journalRows(dataSource, [unit])).toBe(0);
    expect(await journalRows(dataSource, [other])).toBe(1);
    expect(statements).toEqual(atomically(kind));
  });

  it('stores the instances an event\'s changes name besides its target in the subject index, atomically with it', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 1);
    const rows = [
      event('subjects.one', {
        targetType: 'Article',
        targetId: '7',
        changes: [
          { entity: 'Article', id: '7', operation: 'update', fields: { title: { from: 'a', to: 'b' } } },
          { entity: 'Comment', id: '3', operation: 'delete', fields: {} },
          { entity: 'Comment', id: null, operation: 'update', fields: {}, partial: true },
        ],
      }),
      event('subjects.one', { targetType: null, targetId: null, changes: [] }),
    ];
    log.clear();

    await writerFor(dataSource).write(rows, { journalUnits: [unit] });

    // PostgreSQL: one statement (`WITH journal AS (DELETE …), subjects AS (INSERT …) INSERT …`); elsewhere one transaction.
    expect(sent(log)).toEqual(
      kind === 'postgres'
        ? ['WITH JOURNAL']
        : [kind === 'sqlite' ? 'BEGIN TRANSACTION' : 'START TRANSACTION', 'INSERT INTO', 'INSERT INTO', 'DELETE', 'COMMIT'],
    );
    expect(log.queries.some((entry) => /subjects AS \(INSERT INTO \S*audit_subject/.test(entry.query))).toBe(kind === 'postgres');
    expect(await subjectsOf(dataSource, rows)).toEqual({ [rows[0]!.id]: ['Comment:3'], [rows[1]!.id]: [] });
    const [stored] = await dataSource.getRepository(AuditSubjectEntity).find({ where: { eventId: rows[0]!.id, subjectType: 'Comment' } });
    expect(stored!.occurredAt.getTime()).toBe(rows[0]!.occurredAt.getTime());
  });

  it('a retried event does not double its subject rows', async () => {
    const writer = writerFor(dataSource);
    const first = [event('subjects.retried', { changes: [{ entity: 'Customer', id: '9', operation: 'update', fields: {} }] })];
    await writer.write(first);

    // As after a COMMIT whose acknowledgement was lost, and as a recovery in a caller's transaction.
    await Promise.all([writer.write(first.map((row) => Object.assign(new AuditLogEntity(), row))), writer.write(first)]);
    await writer.write(first, { manager: dataSource.manager });

    expect(await storedRows(dataSource, 'subjects.retried')).toBe(1);
    expect(await subjectsOf(dataSource, first)).toEqual({ [first[0]!.id]: ['Customer:9'] });
  });

  it('leaves out of the subject index the target, what the table cannot hold and what stands for a lost value', async () => {
    const rows = [
      event('subjects.odd', {
        targetType: 'Order',
        targetId: '7',
        changes: [
          { entity: 'Order', id: 'x'.repeat(300), operation: 'update', fields: {} },
          { entity: 'Order', id: '[too large: 90000 bytes]', operation: 'update', fields: {}, partial: true },
          { entity: 'order', id: '7', operation: 'update', fields: {} },
          { entity: 'Customer', id: '1', operation: 'update', fields: {} },
        ],
      }),
    ];
    await writerFor(dataSource).write(rows);
    expect(await subjectsOf(dataSource, rows)).toEqual({ [rows[0]!.id]: ['Customer:1'] });
  });

  it('groups concurrent writes into a few statements, each caller with its journal rows', async () => {
    const units = Array.from({ length: 300 }, () => randomUUID());
    for (const unit of units) await addJournal(dataSource, unit, 1);
    log.clear();
    const writer = writerFor(dataSource);

    await Promise.all(units.map((unit) => writer.write([event('grouped')], { journalUnits: [unit] })));

    expect(await storedRows(dataSource, 'grouped')).toBe(300);
    expect(await journalRows(dataSource, units)).toBe(0);
    expect(log.inserts().length).toBeGreaterThan(0);
    expect(log.inserts().length).toBeLessThanOrEqual(30);
    expect(writer.pending).toBe(0);
  });

  it('callers arriving one by one while a batch is written share the next statement and its commit', async () => {
    const writer = writerFor(dataSource);
    await writer.write([event('warm-up')]); // the one-time reads of the server's limits are done
    await new Promise((resolve) => setImmediate(resolve)); // and its batch has left the writer
    log.clear();

    await Promise.all(Array.from({ length: 11 }, () => writer.write([event('one-by-one')])));

    expect(await storedRows(dataSource, 'one-by-one')).toBe(11);
    // The first caller's statement, then the ten that came while it was written, together
    // (a second statement of one event each, at once, cost a commit per request under load).
    expect(log.inserts()).toHaveLength(2);
  });

  it('a backlog of 64 events or more starts a second batch while the first is written', async () => {
    const writer = writerFor(dataSource);
    await writer.write([event('warm-up')]);
    await new Promise((resolve) => setImmediate(resolve));
    log.clear();

    // The writes are queued in one go: the clock held still meanwhile, so that a slow machine
    // taking 5 ms to queue them does not start the second batch by time instead of by backlog.
    const now = performance.now();
    const clock = vi.spyOn(performance, 'now').mockReturnValue(now);
    const writes = Array.from({ length: 101 }, () => writer.write([event('backlog')]));
    clock.mockRestore();
    await Promise.all(writes);

    expect(await storedRows(dataSource, 'backlog')).toBe(101);
    // The first event alone; the 64th queued starts a second batch at once; the rest after.
    // SQLite's one connection writes one batch at a time. The last two batches are in
    // flight together, so which of their INSERTs is sent first is a race (on MariaDB the
    // batch of 36 can overtake the batch of 64): their sizes are what is checked.
    const width = dataSource.getMetadata(AuditLogEntity).columns.length;
    const [first, ...later] = log.inserts().map((insert) => rowsIn(insert, width));
    expect(first).toBe(1);
    expect(later.sort((a, b) => a - b)).toEqual(kind === 'sqlite' ? [100] : [36, 64]);
  });

  it('deletes the journal rows of a unit whose changes all netted out (no events)', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 2);
    const writer = writerFor(dataSource);

    await writer.write([], { journalUnits: [unit] });
    expect(await journalRows(dataSource, [unit])).toBe(0);

    await addJournal(dataSource, unit, 1);
    await writer.write([], { journalUnits: [unit], manager: dataSource.manager });
    expect(await journalRows(dataSource, [unit])).toBe(0);
  });

  it('a failure in a later statement stores nothing of the write and keeps its journal rows', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 2);
    // More rows than one INSERT takes: the bad one is in the last statement.
    const rows = [...Array.from({ length: 2_100 }, () => event('rolled.back')), badEvent(kind, 'rolled.back')];
    log.clear();

    await expect(writerFor(dataSource).write(rows, { journalUnits: [unit] })).rejects.toThrow();
    expect(log.inserts().length).toBeGreaterThan(1);

    expect(await storedRows(dataSource, 'rolled.back')).toBe(0);
    expect(await journalRows(dataSource, [unit])).toBe(2);
  });

  it.runIf(kind === 'postgres')('a journal DELETE that fails rolls back the INSERT', async () => {
    await expect(writerFor(dataSource).write([event('delete.failed')], { journalUnits: ['not-a-uuid'] })).rejects.toThrow(/uuid/);
    expect(await storedRows(dataSource, 'delete.failed')).toBe(0);
  });

  it('with a manager, writes in its transaction: a rollback stores nothing and keeps the journal rows', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 2);
    const writer = writerFor(dataSource);

    await expect(
      dataSource.transaction(async (manager: EntityManager) => {
        await writer.write([event('manager.rolled.back')], { manager, journalUnits: [unit] });
        expect(await manager.getRepository(AuditLogEntity).count({ where: { action: 'manager.rolled.back' } })).toBe(1);
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');

    expect(await storedRows(dataSource, 'manager.rolled.back')).toBe(0);
    expect(await journalRows(dataSource, [unit])).toBe(2);
  });

  it('with a manager that has no transaction, opens one for the INSERT and the DELETE', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 1);
    log.clear();

    await writerFor(dataSource).write([event('manager.own')], { manager: dataSource.manager, journalUnits: [unit] });
    const statements = sent(log);

    expect(await storedRows(dataSource, 'manager.own')).toBe(1);
    expect(await journalRows(dataSource, [unit])).toBe(0);
    expect(statements).toEqual(atomically(kind));
  });

  it('is idempotent by event id: writing stored events again neither fails nor duplicates them', async () => {
    const writer = writerFor(dataSource);
    const first = [event('idempotent'), event('idempotent')];
    await writer.write(first);

    // As after a COMMIT whose acknowledgement was lost: the same events, again, with new ones.
    const again = [...first.map((row) => Object.assign(new AuditLogEntity(), row)), event('idempotent')];
    await Promise.all([writer.write(again), writer.write(first)]);
    await writer.write(first, { manager: dataSource.manager });

    expect(await storedRows(dataSource, 'idempotent')).toBe(3);
  });

  it('writes 20,000 events of one call in statements within the parameter limit', async () => {
    log.clear();
    const rows = Array.from({ length: 20_000 }, (_, i) => event('bulk', { context: { i, note: 'n'.repeat(i % 50) } }));

    await writerFor(dataSource).write(rows);

    expect(await storedRows(dataSource, 'bulk')).toBe(20_000);
    const inserts = log.inserts();
    expect(inserts.length).toBeGreaterThanOrEqual(kind === 'postgres' ? 20_000 / 2_000 : 20_000 / 500);
    for (const insert of inserts) expect(insert.parameters.length).toBeLessThanOrEqual(kind === 'sqlite' ? 32_766 : 65_535);
  });

  it('fails only the caller whose rows the database refuses, among 50 grouped callers', async () => {
    const units = Array.from({ length: 50 }, () => randomUUID());
    for (const unit of units) await addJournal(dataSource, unit, 1);
    log.clear();
    const writer = writerFor(dataSource);
    const bad = 40;

    const results = await settle(
      units.map((unit, i) =>
        writer.write(i === bad ? [event('isolated'), badEvent(kind, 'isolated')] : [event('isolated'), event('isolated')], {
          journalUnits: [unit],
        }),
      ),
    );

    expect(results.map((result) => result.status)).toEqual(units.map((_, i) => (i === bad ? 'rejected' : 'fulfilled')));
    expect(messageOf(results[bad]!)).toMatch(kind === 'sqlite' ? /NOT NULL/ : /too long/i);
    expect(await storedRows(dataSource, 'isolated')).toBe(98);
    expect(await journalRows(dataSource, units)).toBe(1);
    expect(await journalRows(dataSource, [units[bad]!])).toBe(1);
    // The bad rows did share a batch (an INSERT of more than one caller's rows failed).
    const width = dataSource.getMetadata(AuditLogEntity).columns.length;
    expect(log.failed.some((entry) => INSERT_INTO_LOG.test(entry.query) && rowsIn(entry, width) > 2)).toBe(true);
  });

  it('drain() resolves once every queued and in-flight write is stored', async () => {
    const writer = writerFor(dataSource);
    const writes = Array.from({ length: 100 }, () => writer.write([event('drained')]));
    expect(writer.pending).toBeGreaterThan(0);

    await writer.drain(10_000);

    expect(writer.pending).toBe(0);
    expect(await storedRows(dataSource, 'drained')).toBe(100);
    await Promise.all(writes);
    await writer.drain(0);
  });
});

/** A writer that takes statements to be at most `limit` bytes, as with a small `max_allowed_packet`. */
class SmallStatementWriter extends AuditWriter {
  constructor(
    dataSource: DataSource,
    private readonly limit: number,
  ) {
    super(dataSource, resolveAuditOptions({}));
  }
  protected override statementByteLimit(): Promise<number> {
    return Promise.resolve(this.limit);
  }
}

describe.runIf(databases().includes('mariadb'))('AuditWriter on mariadb: statement size', () => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const log = new QueryLog();

  beforeAll(async () => {
    db = await createTestDatabase('mariadb');
    dataSource = await openDataSource(db, log);
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('splits 20,000 events into INSERTs that each fit in the statement size', async () => {
    const limit = 256 * 1024;
    log.clear();
    const rows = Array.from({ length: 20_000 }, (_, i) =>
      event('packet.split', {
        context: { i, note: `${'é'.repeat(i % 40)}${"'".repeat(i % 7)}` },
        changes: [{ entity: 'Customer', id: `${'é'.repeat(i % 40)}${"'".repeat(i % 7)}${i}`, operation: 'update', fields: {} }],
      }),
    );

    await new SmallStatementWriter(dataSource, limit).write(rows);

    expect(await storedRows(dataSource, 'packet.split')).toBe(20_000);
    const sizes = log.inserts().map((insert) => Buffer.byteLength(mysql.format(insert.query, insert.parameters as never)));
    const total = sizes.reduce((sum, size) => sum + size, 0);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(limit);
    // Split by size, not only by row count:
    expect(sizes.length).toBeGreaterThan(Math.ceil(total / limit));
    expect(sizes.length).toBeGreaterThan(20_000 / 500);
    // Their subject rows too.
    const subjectSizes = log.queries
      .filter((entry) => /INSERT INTO \S*audit_subject/.test(entry.query))
      .map((insert) => Buffer.byteLength(mysql.format(insert.query, insert.parameters as never)));
    expect(subjectSizes.length).toBeGreaterThanOrEqual(20_000 / 500);
    expect(Math.max(...subjectSizes)).toBeLessThanOrEqual(limit);
    expect(await dataSource.getRepository(AuditSubjectEntity).count()).toBe(20_000);
  });

  it('an event bigger than a statement may be fails only its own caller, clearly', async () => {
    const writer = new SmallStatementWriter(dataSource, 64 * 1024);
    const big = 6;
    const results = await settle(
      Array.from({ length: 8 }, (_, i) =>
        writer.write([event('packet.oversize', i === big ? { context: { blob: 'x'.repeat(100 * 1024) } } : {})]),
      ),
    );
    expect(results.map((result) => result.status)).toEqual(results.map((_, i) => (i === big ? 'rejected' : 'fulfilled')));
    expect(messageOf(results[big]!)).toMatch(/takes \d+ bytes as SQL, more than one statement may carry \(\d+ bytes.*max_allowed_packet/);
    expect(await storedRows(dataSource, 'packet.oversize')).toBe(7);
  });

  it('reads the server\'s max_allowed_packet: a big event that fits is stored, one that does not fails', async () => {
    const read = (await dataSource.query('SELECT @@max_allowed_packet AS packet')) as Array<{ packet: string }>;
    const packet = Number(read[0]!.packet);
    const writer = writerFor(dataSource);
    // Three bytes per character would not fit; the real size (one byte each) does.
    const fits = Math.floor((packet * 0.9) / 2);
    await writer.write([event('packet.real', { context: { blob: 'y'.repeat(fits) } })]);
    expect(await storedRows(dataSource, 'packet.real')).toBe(1);

    await expect(writer.write([event('packet.real', { context: { blob: 'z'.repeat(packet) } })])).rejects.toThrow(
      /more than one statement may carry .*max_allowed_packet/,
    );
    expect(await storedRows(dataSource, 'packet.real')).toBe(1);
  });
});

const servers = databases().filter((kind): kind is 'postgres' | 'mariadb' => kind !== 'sqlite');

describe.each(servers)('AuditWriter on %s behind a failing network', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const proxy = new TcpProxy('127.0.0.1', kind === 'postgres' ? 5432 : 3306);

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    await proxy.start();
    dataSource = await openDataSource(db, undefined, { host: '127.0.0.1', port: proxy.port });
  });
  afterAll(async () => {
    proxy.restore();
    proxy.setLatency(0);
    await dataSource?.destroy().catch(() => undefined);
    await proxy.stop();
    await db?.drop();
  });

  /** Opens `count` pooled connections, so that latency tests do not wait for new ones. */
  const warmPool = (count: number): Promise<unknown> =>
    Promise.all(Array.from({ length: count }, () => dataSource.query(kind === 'postgres' ? 'SELECT pg_sleep(0.05)' : 'SELECT SLEEP(0.05)')));

  it('fails all 300 callers within seconds when the connection is lost, and writes again once it is back', async () => {
    const writer = writerFor(dataSource);
    await writer.write([event('lost.before')]);
    const units = Array.from({ length: 300 }, () => randomUUID());
    for (const unit of units) await addJournal(dataSource, unit, 1);

    let results: Array<PromiseSettledResult<unknown>>;
    let elapsed: number;
    proxy.cut();
    try {
      const started = Date.now();
      results = await settle(units.map((unit) => writer.write([event('lost.during')], { journalUnits: [unit] })));
      elapsed = Date.now() - started;
    } finally {
      proxy.restore();
    }

    expect(results.filter((result) => result.status === 'rejected')).toHaveLength(300);
    expect(elapsed).toBeLessThan(5_000);
    expect(messageOf(results[150]!)).toMatch(/terminated|connection lost|closed|ECONNRESET|ECONNREFUSED/i);
    // At once: a batch's callers share its error rather than being tried one by one.
    expect(new Set(results.map((result) => (result as PromiseRejectedResult).reason)).size).toBeLessThanOrEqual(8);
    expect(writer.pending).toBe(0);

    await writer.write([event('lost.after')]);
    expect(await storedRows(dataSource, 'lost.after')).toBe(1);
    expect(await storedRows(dataSource, 'lost.during')).toBe(0);
    expect(await journalRows(dataSource, units)).toBe(300);
  });

  it('makes callers past maxQueuedEvents wait, then fail after queueTimeout naming the option; the others are stored', async () => {
    await warmPool(6);
    const writer = writerFor(dataSource, { maxQueuedEvents: 20, queueTimeout: 300 });
    proxy.setLatency(700);
    try {
      const started = Date.now();
      const writes = Array.from({ length: 30 }, () => writer.write([event('queue.full')]));
      expect(writer.pending).toBe(20);
      const late = await settle(writes.slice(20));
      const waited = Date.now() - started;

      expect(late.every((result) => result.status === 'rejected' && result.reason instanceof AuditQueueFullError)).toBe(true);
      expect(messageOf(late[0]!)).toMatch(/audit writer's queue is full.*queueTimeout.*maxQueuedEvents/);
      expect(waited).toBeGreaterThanOrEqual(280);
      expect(waited).toBeLessThan(1_400);
      expect(writer.pending).toBeLessThanOrEqual(20);

      proxy.setLatency(0);
      await Promise.all(writes.slice(0, 20));
      expect(await storedRows(dataSource, 'queue.full')).toBe(20);
    } finally {
      proxy.setLatency(0);
    }
  });

  it('gives room to waiting callers first come, first served', async () => {
    await warmPool(6);
    const writer = writerFor(dataSource, { maxQueuedEvents: 5, queueTimeout: 2_000 });
    proxy.setLatency(250);
    try {
      const results = await settle(Array.from({ length: 40 }, () => writer.write([event('queue.fifo')])));
      const statuses = results.map((result) => result.status);
      const stored = statuses.filter((status) => status === 'fulfilled').length;

      // Some waiters got room, the latest did not, and no one overtook an earlier caller.
      expect(stored).toBeGreaterThan(5);
      expect(stored).toBeLessThan(40);
      expect(statuses).toEqual(statuses.map((_, i) => (i < stored ? 'fulfilled' : 'rejected')));
      expect(await storedRows(dataSource, 'queue.fifo')).toBe(stored);
    } finally {
      proxy.setLatency(0);
    }
  });

  it('drain() rejects after its timeout while writes are still in flight', async () => {
    await warmPool(2);
    const writer = writerFor(dataSource);
    proxy.setLatency(500);
    try {
      const write = writer.write([event('drain.slow')]);
      await expect(writer.drain(100)).rejects.toThrow(/did not drain within 100 ms: 1 event\(s\)/);
      proxy.setLatency(0);
      await write;
      await writer.drain(1_000);
      expect(await storedRows(dataSource, 'drain.slow')).toBe(1);
    } finally {
      proxy.setLatency(0);
    }
  });
});

describe.runIf(databases().includes('postgres'))('AuditWriter on postgres: lock timeouts', () => {
  let db: TestDatabase;
  let dataSource: DataSource;
  const log = new QueryLog();

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    // Every session of this data source gives up waiting for a lock after 500 ms.
    dataSource = await openDataSource(db, log, { extra: { max: 5, options: '-c lock_timeout=500' } });
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('retries a batch that timed out waiting for a lock once, as a whole', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 1);
    const holder = dataSource.createQueryRunner();
    await holder.startTransaction();
    try {
      await holder.query(`SELECT * FROM ${escapedJournal(dataSource)} WHERE unit_id = $1 FOR UPDATE`, [unit]);
      log.clear();
      const write = writerFor(dataSource).write([event('lock.retried')], { journalUnits: [unit] });
      // The first attempt gives up at 500 ms; the lock goes at 750 ms, while the retry waits.
      await new Promise((resolve) => setTimeout(resolve, 750));
      await holder.commitTransaction();
      await write;
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
    expect(log.failed.filter((entry) => INSERT_INTO_LOG.test(entry.query))).toHaveLength(1);
    expect(await storedRows(dataSource, 'lock.retried')).toBe(1);
    expect(await journalRows(dataSource, [unit])).toBe(0);
  });

  it('fails the callers when the lock is still held after the retry', async () => {
    const unit = randomUUID();
    await addJournal(dataSource, unit, 1);
    const holder = dataSource.createQueryRunner();
    await holder.startTransaction();
    try {
      await holder.query(`SELECT * FROM ${escapedJournal(dataSource)} WHERE unit_id = $1 FOR UPDATE`, [unit]);
      const started = Date.now();
      await expect(writerFor(dataSource).write([event('lock.held')], { journalUnits: [unit] })).rejects.toThrow(/lock timeout/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    } finally {
      await holder.rollbackTransaction();
      await holder.release();
    }
    expect(await storedRows(dataSource, 'lock.held')).toBe(0);
    expect(await journalRows(dataSource, [unit])).toBe(1);
  });
});

const escapedJournal = (dataSource: DataSource): string => {
  const metadata = dataSource.getMetadata(AuditJournalEntity);
  return metadata.tablePath
    .split('.')
    .map((part) => dataSource.driver.escape(part))
    .join('.');
};
