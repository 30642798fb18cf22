// Hostile tests of the writer's batching: a second batch waits for the one in flight only
// briefly (a backlog of 64 events, or 5 ms), so a slow batch (a lock, a bulk write, a
// connection gone silent) does not hold up the callers behind it. Each test reproduced a
// defect of a first version that waited for the batch in flight, however long it took.
import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditJournalEntity, AuditMigrations } from '../../lib/index.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { POSTGRES } from '../support/database-probe.js';
import { createTestDatabase, databases, type DatabaseKind, type TestDatabase } from '../support/test-database.js';
import { writerEvent } from '../support/writer-events.js';

const make = (ds: DataSource): AuditWriter => new AuditWriter(ds, resolveAuditOptions({}));

const event = (action: string) => writerEvent(action);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves to how long `promise` took to settle, or 'pending' if it did not within `ms`. */
async function within(promise: Promise<unknown>, started: number, ms: number): Promise<number | 'pending'> {
  const done = promise.then(
    () => Date.now() - started,
    () => Date.now() - started,
  );
  return Promise.race([done, sleep(ms).then(() => 'pending' as const)]);
}

async function open(db: TestDatabase, extra: Record<string, unknown> = {}): Promise<DataSource> {
  return new DataSource({ ...db.options, ...extra, entities: [...AuditEntities], migrations: [...AuditMigrations], migrationsRun: true } as DataSourceOptions).initialize();
}

const journalTable = (ds: DataSource): string =>
  ds
    .getMetadata(AuditJournalEntity)
    .tablePath.split('.')
    .map((part) => ds.driver.escape(part))
    .join('.');

async function addJournal(ds: DataSource, unitId: string): Promise<void> {
  await ds.getRepository(AuditJournalEntity).insert({ id: randomUUID(), unitId, instanceId: randomUUID(), createdAt: new Date(), entry: { changes: [] } as never });
}

const servers = databases().filter((kind): kind is Exclude<DatabaseKind, 'sqlite'> => kind !== 'sqlite');

describe.each(servers)('hostile: the writer with one batch stuck on a lock (%s)', (kind) => {
  let db: TestDatabase;
  let ds: DataSource;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    ds = await open(db);
  });
  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  // A unit's batch waits for a row lock on its audit_journal rows (another instance's journal
  // recovery, an operator's transaction...). A later caller with one event and no journal
  // rows needs nothing that is locked: it goes in the second batch, on another pooled
  // connection, and is stored at once (it waited for the stuck batch: about 4 s).
  it('a one-event caller is stored at once while an unrelated batch waits 4 s on a journal row lock', async () => {
    const writer = make(ds);
    await writer.write([event('warm-up')]);
    await sleep(50);
    const unit = randomUUID();
    await addJournal(ds, unit);
    const holder = ds.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    let small: number | 'pending' | undefined;
    try {
      await holder.query(`SELECT * FROM ${journalTable(ds)} WHERE unit_id = ${kind === 'postgres' ? '$1' : '?'} FOR UPDATE`, [unit]);
      const stuck = writer.write([event('stuck')], { journalUnits: [unit] });
      await sleep(200);
      const started = Date.now();
      small = await within(writer.write([event('unrelated')]), started, 1_500);
      await sleep(Math.max(0, 4_000 - (Date.now() - started)));
      await holder.commitTransaction();
      await stuck;
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
    await writer.drain(10_000);
    console.log(`[${kind}] unrelated one-event write while a batch waited on a lock: ${small === 'pending' ? 'still pending after 1.5 s' : `${small} ms`}`);
    expect(small).not.toBe('pending');
  }, 30_000);
});

/**
 * A TCP proxy that stops forwarding, both ways, on a connection whose client sends a chunk
 * containing `marker`: the connection goes silent (as one dropped by a NAT or firewall, or a
 * server that froze), without an error.
 */
class BlackholeProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly marker: string) {}
  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(POSTGRES.port, POSTGRES.host);
      this.sockets.add(client).add(upstream);
      let silent = false;
      client.on('data', (chunk: Buffer) => {
        if (chunk.toString('latin1').includes(this.marker)) silent = true;
        if (!silent) upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!silent) client.write(chunk);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

describe.runIf(servers.includes('postgres'))('hostile: the writer with one pooled connection gone silent (postgres)', () => {
  // One batch's connection goes silent (no error: the TCP peer just stops answering). Only
  // that batch's callers wait; the following callers are written on the other connections
  // (they waited behind the silent batch: with light traffic, forever).
  it('callers after a batch whose connection went silent are still stored', async () => {
    const db = await createTestDatabase('postgres');
    const proxy = new BlackholeProxy('blackhole.me');
    await proxy.start();
    const ds = await open({ ...db, options: { ...db.options, host: '127.0.0.1', port: proxy.port } as DataSourceOptions });
    const writer = make(ds);
    let outcome: Array<number | 'pending'> | undefined;
    try {
      await writer.write([event('warm-up')]);
      await sleep(50);
      void writer.write([event('blackhole.me')]).catch(() => undefined);
      await sleep(200);
      // Light traffic: ten requests, 100 ms apart, one event each.
      const started = Date.now();
      const later: Array<Promise<void>> = [];
      for (let i = 0; i < 10; i++) {
        later.push(writer.write([event('after-silence')]));
        await sleep(100);
      }
      outcome = await Promise.all(later.map((write) => within(write, started, 3_000)));
    } finally {
      await proxy.stop();
      await ds.destroy().catch(() => undefined);
      await db.drop();
    }
    const pending = outcome.filter((o) => o === 'pending').length;
    console.log(`[postgres] callers after a silent connection: ${pending} of 10 still pending after 3 s`);
    expect(pending).toBe(0);
  }, 30_000);
});

describe.runIf(servers.includes('postgres'))('hostile: latency of a small caller behind a large write (postgres)', () => {
  let db: TestDatabase;
  let ds: DataSource;
  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    ds = await open(db);
  });
  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  // A unit that changed many rows (a bulk import: 20,000 events in one write) is one batch.
  // A request's single event arriving meanwhile goes in the second batch (it waited until
  // the whole bulk write had committed).
  it('a one-event caller does not wait for a 20,000-event write in flight', async () => {
    const writer = make(ds);
    await writer.write([event('warm-up')]);
    await sleep(50);
    const bulkStarted = Date.now();
    const bulk = writer.write(Array.from({ length: 20_000 }, () => event('bulk')));
    await sleep(20);
    const started = Date.now();
    const small = await writer.write([event('small')]).then(() => Date.now() - started);
    await bulk;
    const bulkTook = Date.now() - bulkStarted;
    console.log(`[postgres] bulk write ${bulkTook} ms; one-event write issued 20 ms after it took ${small} ms`);
    expect(small).toBeLessThan(Math.max(200, bulkTook / 3));
  }, 60_000);
});
