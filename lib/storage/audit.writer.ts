import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { AuditDataSources } from '../capture/audit-data-sources.js';
import type { DataSource, EntityManager } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditQueueFullError } from '../exceptions/audit-queue-full.error.js';
import { ownStatement } from '../capture/own-statements.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditLogEntity } from './audit-log.entity.js';
import { classifyDatabaseError, driverErrorCode, retryTransient } from './database-errors.js';
import { JournalIndex } from './journal-index.js';
import { readCommittedTransaction } from './read-committed.js';
import { escapedTable } from './sql.js';
import { AuditUnitRecoveredError } from '../exceptions/audit-unit-recovered.error.js';
import { isGuardFailure, WriteStatements, type JournalCheckRow, type JournalGuard, type Statement } from './write-statements.js';
import { isSqlite } from './drivers.js';
import { onOwnRunner } from './own-runner.js';

/**
 * Batches written at the same time, at most (each holds one pooled connection). Two, the
 * second only for a backlog (see SECOND_BATCH_EVENTS): under load the next batch forms
 * while one is written, so units share a statement and a commit (more in flight made
 * more, smaller batches for no more throughput).
 */
const BATCHES_IN_FLIGHT = 2;
/**
 * When a second batch starts while one is being written: once SECOND_BATCH_EVENTS events
 * are queued, or once the batch in flight has taken SECOND_BATCH_AFTER_MS. Until then the
 * queue waits for it and goes as one statement after it: under load a request's event
 * shares its statement and commit with others rather than getting its own, a backlog
 * still fills both connections, and a batch that is slow (a bulk write, a lock, a
 * connection gone silent) holds the others up a few milliseconds at most.
 */
const SECOND_BATCH_EVENTS = 64;
const SECOND_BATCH_AFTER_MS = 5;
/** Rows one batch takes from the queue, at most. */
const ROWS_PER_BATCH = 2000;
/** Bytes of one statement, at most, where the server has no smaller limit of its own. */
const DEFAULT_STATEMENT_BYTES = 64 * 1024 * 1024;
/** Share of MySQL's `max_allowed_packet` one statement may fill: the rest is the margin. */
const PACKET_SHARE = 0.9;
const NO_UNITS: readonly string[] = [];
const NONE_GONE: ReadonlySet<number> = new Set();

/** How a call to {@link AuditWriter.write} stores its rows. */
export interface AuditWriteOptions {
  /** Write inside this manager's transaction, at once, without queueing. */
  manager?: EntityManager;
  /** Delete the `audit_journal` rows of these unit ids in the same transaction as the insert. */
  journalUnits?: readonly string[];
  /**
   * The ids of the journal rows (in the audit data source) of the unit in `journalUnits`:
   * the rows are stored only if every one of these is still there to delete, atomically
   * with the other callers' rows of the batch. If one is gone (another instance took this
   * one for dead and recovered the unit), nothing of this write is stored and it rejects
   * with `AuditUnitRecoveredError`; the batch's other callers are unaffected.
   */
  journalRows?: readonly string[];
  /**
   * Units with journal rows in data sources other than the audit one. A marker row per
   * unit goes into the audit data source's journal with the insert; once that has
   * committed, the units' rows are deleted from those data sources, then the markers
   * (a unit recovered meanwhile finds its marker and is not stored twice). Not with
   * `manager`.
   */
  journalElsewhere?: ReadonlyArray<JournalElsewhere>;
}

/** Units whose journal rows are in `dataSource`, another data source than the audit one. */
export interface JournalElsewhere {
  dataSource: DataSource;
  unitIds: readonly string[];
}

interface Pending {
  rows: readonly AuditLogEntity[];
  units: readonly string[];
  /** The journal rows that must all still be there (see `AuditWriteOptions.journalRows`). */
  journalRows?: readonly string[];
  elsewhere?: ReadonlyArray<JournalElsewhere>;
  resolve(): void;
  reject(error: unknown): void;
  /** While waiting for room in the queue: its `queueTimeout` timer. */
  timer?: ReturnType<typeof setTimeout>;
  /** Gave up waiting for room (left in the waiting line, skipped). */
  expired?: boolean;
}

/** A first-in first-out line whose `shift` costs the same however long the line is. */
class Line<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/**
 * Stores audit rows in `audit_log` with multi-row INSERTs and deletes the `audit_journal`
 * rows of the units of work they come from, in one transaction.
 *
 * Given a manager, it writes inside that manager's transaction (opening one when more
 * than one statement is needed), at once. Otherwise writes from concurrent units are
 * grouped: while batches are being written, new rows queue up and go together in the
 * next batch (group commit), so many units cost a few statements rather than a few each.
 * Every caller still waits for its own rows to be stored.
 *
 * - **Atomic**: a batch is one transaction: its INSERTs, then the journal DELETEs of all
 *   its callers. If anything fails, nothing of the batch is stored and the journal rows
 *   stay.
 * - **Idempotent**: an event id already in `audit_log` is skipped (`ON CONFLICT DO
 *   NOTHING`, `ON DUPLICATE KEY UPDATE id = id` on MySQL/MariaDB), so a batch whose COMMIT
 *   succeeded but whose acknowledgement was lost can be written again.
 * - **Failures**: a batch that fails on a deadlock, lock timeout or serialization failure
 *   is retried once as a whole. One that fails on the connection or the server's
 *   availability (refused, reset, timed out, terminated, too many connections, shutting
 *   down) fails every caller at once with the database's error: nothing in the rows is at
 *   fault, and trying them one by one would only keep the callers waiting. Any other
 *   error is taken for bad data: the batch is retried caller by caller, so one caller's
 *   bad rows never fail another's.
 * - **Bounded**: at most `maxQueuedEvents` events are queued or being written. A caller
 *   that would go past it waits for room, first come first served, up to `queueTimeout`
 *   ms, then fails with `AuditQueueFullError`. A single write larger than the bound is
 *   let in alone, when nothing else is pending.
 */
@Injectable()
export class AuditWriter {
  private readonly logger = new Logger('Audit');
  private readonly queue = new Line<Pending>();
  private readonly waiting = new Line<Pending>();
  private waitingCount = 0;
  private queuedEvents = 0;
  private inFlightEvents = 0;
  private inFlight = 0;
  /** When each batch in flight started (`performance.now()`), oldest first. */
  private readonly flightStarts: number[] = [];
  private pumpTimer?: ReturnType<typeof setTimeout>;
  private readonly idleListeners = new Set<() => void>();
  private readonly statementsOf = new WeakMap<DataSource, WriteStatements>();
  private readonly byteLimits = new WeakMap<DataSource, Promise<number>>();
  private readonly layouts = new WeakMap<DataSource, Promise<void>>();
  /** Per data source other than the audit one, its journal's unit id index (see JournalIndex.unitDeletes). */
  private readonly journalIndexes = new WeakMap<DataSource, JournalIndex>();

  constructor(
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    /** The captured data sources: an event's links may name entities of any of them. */
    @Optional() private readonly dataSources?: AuditDataSources,
  ) {}

  /** Queued and in-flight events: written or failed soon, and counted against `maxQueuedEvents`. */
  get pending(): number {
    return this.queuedEvents + this.inFlightEvents;
  }

  /**
   * Stores `rows` in `audit_log` and deletes the `audit_journal` rows of
   * `options.journalUnits`, atomically. Resolves once both are committed (or, with
   * `options.manager`, done in that manager's transaction).
   *
   * @throws AuditQueueFullError when the queue had no room within `queueTimeout`.
   * @throws the database's error when the rows could not be stored.
   */
  write(rows: readonly AuditLogEntity[], options: AuditWriteOptions = {}): Promise<void> {
    const units = options.journalUnits ?? NO_UNITS;
    const elsewhere = options.journalElsewhere?.length ? options.journalElsewhere : undefined;
    if (rows.length === 0 && units.length === 0 && !elsewhere) return Promise.resolve();
    const journalRows = options.journalRows && units.length > 0 ? options.journalRows : undefined;
    if (options.manager) {
      const guards = journalRows ? [{ key: 0, ids: journalRows, rows, units }] : [];
      return this.store(options.manager, rows, units, NO_UNITS, guards).then((gone) => {
        if (gone.size) throw new AuditUnitRecoveredError(rows.length);
      });
    }
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { rows, units, resolve, reject, ...(elsewhere ? { elsewhere } : {}), ...(journalRows ? { journalRows } : {}) };
      if (this.waitingCount === 0 && this.hasRoom(rows.length)) this.enqueue(pending);
      else this.wait(pending);
    });
  }

  /**
   * Resolves when nothing is queued, waiting for room or being written; rejects after
   * `timeoutMs`. For shutdown: it stops nothing, new writes are still taken.
   */
  drain(timeoutMs: number): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const listener = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.idleListeners.delete(listener);
        reject(
          new Error(
            `The audit writer did not drain within ${timeoutMs} ms: ${this.pending} event(s) queued or being written, ` +
              `${this.waitingCount} write(s) waiting for room`,
          ),
        );
      }, timeoutMs);
      this.idleListeners.add(listener);
    });
  }

  /**
   * The most bytes one statement may take on the audit data source: 90% of MySQL's or
   * MariaDB's `max_allowed_packet` (read once), 64 MiB elsewhere.
   */
  protected statementByteLimit(manager: EntityManager): Promise<number> {
    const dataSource = manager.connection;
    if (!this.statements(dataSource).mysql) return Promise.resolve(DEFAULT_STATEMENT_BYTES);
    let limit = this.byteLimits.get(dataSource);
    if (!limit) {
      const read = manager.query('SELECT @@max_allowed_packet AS packet').then((result: Array<{ packet: number | string }>) => {
        const packet = Number(result[0]?.packet);
        return Math.floor((Number.isFinite(packet) && packet > 0 ? packet : 4 * 1024 * 1024) * PACKET_SHARE);
      });
      // Not read (the server is down): the next write tries again.
      read.catch(() => {
        if (this.byteLimits.get(dataSource) === read) this.byteLimits.delete(dataSource);
      });
      this.byteLimits.set(dataSource, (limit = read));
    }
    return limit;
  }

  private get idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0 && this.waitingCount === 0;
  }

  private hasRoom(events: number): boolean {
    const used = this.queuedEvents + this.inFlightEvents;
    return used === 0 || used + events <= this.options.maxQueuedEvents;
  }

  private enqueue(pending: Pending): void {
    this.queue.push(pending);
    this.queuedEvents += pending.rows.length;
    this.pump();
  }

  private wait(pending: Pending): void {
    this.waitingCount++;
    this.waiting.push(pending);
    pending.timer = setTimeout(() => {
      pending.expired = true;
      this.waitingCount--;
      pending.reject(new AuditQueueFullError(pending.rows.length, this.options.maxQueuedEvents, this.options.queueTimeout));
      // The first in line may have blocked the ones behind it.
      this.admit();
      this.notifyIfIdle();
    }, this.options.queueTimeout);
  }

  /** Lets waiting writes in, in their order of arrival, while there is room for the first. */
  private admit(): void {
    for (let next = this.waiting.peek(); next; next = this.waiting.peek()) {
      if (next.expired) {
        this.waiting.shift();
        continue;
      }
      if (!this.hasRoom(next.rows.length)) return;
      this.waiting.shift();
      clearTimeout(next.timer);
      this.waitingCount--;
      this.enqueue(next);
    }
  }

  private pump(): void {
    // SQLite: TypeORM has one connection, which cannot hold two transactions at once.
    const limit = isSqlite(this.dataSource) ? 1 : BATCHES_IN_FLIGHT;
    while (this.inFlight < limit && this.queue.length > 0) {
      if (this.inFlight > 0 && this.queuedEvents < SECOND_BATCH_EVENTS) {
        const wait = this.flightStarts[0]! + SECOND_BATCH_AFTER_MS - performance.now();
        if (wait > 0) {
          this.pumpTimer ??= setTimeout(() => {
            this.pumpTimer = undefined;
            this.pump();
          }, Math.ceil(wait));
          return;
        }
      }
      const batch: Pending[] = [];
      let size = 0;
      let events = 0;
      for (let next = this.queue.peek(); next; next = this.queue.peek()) {
        const weight = Math.max(next.rows.length, 1);
        if (batch.length > 0 && size + weight > ROWS_PER_BATCH) break;
        this.queue.shift();
        batch.push(next);
        size += weight;
        events += next.rows.length;
      }
      this.queuedEvents -= events;
      this.inFlightEvents += events;
      this.inFlight++;
      const started = performance.now();
      this.flightStarts.push(started);
      void this.flush(batch).finally(() => {
        this.inFlight--;
        this.flightStarts.splice(this.flightStarts.indexOf(started), 1);
        this.inFlightEvents -= events;
        this.admit();
        this.pump();
        this.notifyIfIdle();
      });
    }
  }

  private notifyIfIdle(): void {
    if (!this.idle || this.idleListeners.size === 0) return;
    const listeners = [...this.idleListeners];
    this.idleListeners.clear();
    for (const listener of listeners) listener();
  }

  /** Writes a batch; settles every caller in it. Never rejects. */
  private async flush(batch: Pending[]): Promise<void> {
    try {
      const { error, gone } = await this.attempt(batch);
      if (gone) {
        batch.forEach((pending, index) => (gone.has(index) ? pending.reject(new AuditUnitRecoveredError(pending.rows.length)) : pending.resolve()));
        return;
      }
      if (batch.length === 1 || classifyDatabaseError(error) !== 'data') {
        for (const pending of batch) pending.reject(error);
        return;
      }
      // Bad data somewhere: caller by caller, so that only its owner fails.
      for (let index = 0; index < batch.length; index++) {
        const pending = batch[index]!;
        const { error: callerError, gone: callerGone } = await this.attempt([pending]);
        if (callerGone) {
          if (callerGone.size) pending.reject(new AuditUnitRecoveredError(pending.rows.length));
          else pending.resolve();
          continue;
        }
        pending.reject(callerError);
        if (classifyDatabaseError(callerError) !== 'data') {
          // The database went away meanwhile: the rest fail with it, at once.
          for (const rest of batch.slice(index + 1)) rest.reject(callerError);
          return;
        }
      }
    } catch (error) {
      for (const pending of batch) pending.reject(error);
    }
  }

  /**
   * Stores the callers' rows in one transaction, tried again after a deadlock, a
   * serialization failure or a lock timeout (a few times, see {@link retryTransient}).
   * Returns the error, if any, or else the callers (by index) whose journal rows were
   * gone, their rows not stored.
   */
  private async attempt(batch: readonly Pending[]): Promise<{ error: unknown; gone?: undefined } | { error?: undefined; gone: ReadonlySet<number> }> {
    const rows = batch.length === 1 ? batch[0]!.rows : batch.flatMap((pending) => pending.rows);
    const units = batch.length === 1 ? batch[0]!.units : batch.flatMap((pending) => pending.units);
    const elsewhere = batch.some((pending) => pending.elsewhere) ? batch.flatMap((pending) => pending.elsewhere ?? []) : [];
    const markers = elsewhere.length ? [...new Set(elsewhere.flatMap((entry) => entry.unitIds))] : NO_UNITS;
    const guards: JournalGuard[] = [];
    batch.forEach((pending, key) => {
      if (pending.journalRows) guards.push({ key, ids: pending.journalRows, rows: pending.rows, units: pending.units });
    });
    try {
      // On a runner of its own: not the manager a transactional library hands out in the caller's context (see onOwnRunner).
      const gone = await retryTransient(() => onOwnRunner(this.dataSource, (manager) => this.store(manager, rows, units, markers, guards)));
      if (elsewhere.length) await this.deleteElsewhere(elsewhere, markers);
      return { gone };
    } catch (error) {
      return { error };
    }
  }

  /**
   * After the insert: the units' journal rows in other data sources, then their markers.
   * A failure is only logged: the events are stored, and recovery, finding the markers,
   * deletes what is left without storing it again.
   */
  private async deleteElsewhere(elsewhere: readonly JournalElsewhere[], markers: readonly string[]): Promise<void> {
    try {
      const bySource = new Map<DataSource, string[]>();
      for (const { dataSource, unitIds } of elsewhere) bySource.set(dataSource, [...(bySource.get(dataSource) ?? []), ...unitIds]);
      // Autocommit statements, one lookup per unit on MySQL/MariaDB (see WriteStatements.journalCheck).
      for (const [dataSource, unitIds] of bySource) {
        let index = this.journalIndexes.get(dataSource);
        if (!index) this.journalIndexes.set(dataSource, (index = new JournalIndex(dataSource)));
        const run = (journal: JournalIndex): Promise<void> =>
          onOwnRunner(dataSource, async (manager) => {
            for (const statement of journal.unitDeletes(unitIds)) await manager.query(statement.sql, ownStatement(statement.params));
          });
        try {
          await run(index);
        } catch (error) {
          // A journal table made without the index: refused at the first statement, before anything was deleted.
          if (!index.refused(error)) throw error;
          index.drop();
          await run(index);
        }
      }
      for (const statement of this.statements(this.dataSource).markerDeletes(markers)) await this.dataSource.query(statement.sql, ownStatement(statement.params));
    } catch (error) {
      this.logger.warn(`Audit: events stored, but their journal rows in another data source were not deleted (recovery will): ${(error as Error).message}`);
    }
  }

  /**
   * The INSERTs, journal DELETEs and markers, in `manager`'s transaction or in one of their
   * own. Returns the keys of the `guards` whose journal rows were gone (their rows not stored).
   */
  private async store(
    manager: EntityManager,
    rows: readonly AuditLogEntity[],
    units: readonly string[],
    markers: readonly string[],
    guards: readonly JournalGuard[] = [],
  ): Promise<ReadonlySet<number>> {
    const statements = this.statements(manager.connection);
    if (rows.length > 0 && statements.postgres) await this.layout(manager, statements);
    try {
      // Also a unit without events (its changes cancelled out): its journal rows are guarded all the same.
      if (guards.length > 0) return await this.runGuarded(manager, statements, rows, units, markers, guards);
      await this.run(manager, statements, rows, units, markers);
      return NONE_GONE;
    } catch (error) {
      // 42P10: the conflict clause names no unique index: audit_log was partitioned (or back) since it was looked at.
      if (driverErrorCode(error) === '42P10') this.layouts.delete(manager.connection);
      // MySQL/MariaDB, a journal table made without the unit id index the statements name:
      // they name none from now on, and the write runs again (nothing of it was stored; its
      // INSERTs, run again in a caller's transaction, skip the rows already there).
      if (statements.refusedJournalIndex(error)) {
        statements.withoutJournalIndex();
        return this.store(manager, rows, units, markers, guards);
      }
      throw error;
    }
  }

  /**
   * A write with guarded units: their events are stored only if all their journal rows
   * were still there to delete. On PostgreSQL, when the rows fit in one statement, that
   * statement checks it (CTEs: no round trip more) and fails, doing nothing, if one unit's
   * rows are not all there; otherwise (and then) the write's transaction first reads the
   * units' journal rows (locking them where the database can), and stores the events and
   * deletes the journal rows of the units that had them all — the others' rows are left
   * for recovery.
   */
  private async runGuarded(
    manager: EntityManager,
    statements: WriteStatements,
    rows: readonly AuditLogEntity[],
    units: readonly string[],
    markers: readonly string[],
    guards: readonly JournalGuard[],
  ): Promise<ReadonlySet<number>> {
    const byteLimit = await this.statementByteLimit(manager);
    // Not inside a transaction of the caller's: the statement's failure would abort it.
    const single = markers.length || manager.queryRunner?.isTransactionActive ? undefined : statements.guardedWrite(rows, units, guards, byteLimit);
    if (single) {
      try {
        await manager.query(single.sql, ownStatement(single.params));
        return NONE_GONE;
      } catch (error) {
        // A unit recovered elsewhere: nothing was done; the several-statement path sorts the units out.
        if (!isGuardFailure(error)) throw error;
      }
    }
    const check = statements.journalCheck(units);
    const run = async (target: EntityManager): Promise<ReadonlySet<number>> => {
      const present = new Set<string>();
      const marked = new Set<string>();
      for (const statement of check.statements) {
        const found = (await target.query(statement.sql, ownStatement(statement.params))) as JournalCheckRow[] | undefined;
        for (const row of found ?? []) {
          present.add(row.id);
          // 1, '1' or true, as the driver gives a comparison's value.
          if (row.marker && row.marker !== '0') marked.add(row.unit);
        }
      }
      // A unit recovered elsewhere: neither its events stored nor its journal rows deleted —
      // rows it wrote after the recovery stay for recovery to record. So too a unit whose
      // rows are there beside a marker: another instance stored its events (two data sources
      // on one database: its rows were that instance's rows of another data source too, whose
      // DELETE of them rolled back after the events and their markers had committed).
      const goneGuards = guards.filter((guard) => guard.units.some((unit) => marked.has(unit)) || guard.ids.some((id) => !present.has(id)));
      const skipped = new Set(goneGuards.flatMap((guard) => guard.rows));
      const spared = new Set(goneGuards.flatMap((guard) => guard.units));
      const kept = skipped.size ? rows.filter((row) => !skipped.has(row)) : rows;
      const sql = statements.write(kept, spared.size ? units.filter((unit) => !spared.has(unit)) : units, byteLimit);
      if (markers.length) sql.push(...statements.markers(markers, new Date()));
      for (const statement of sql) await target.query(statement.sql, ownStatement(statement.params));
      return goneGuards.length ? new Set(goneGuards.map((guard) => guard.key)) : NONE_GONE;
    };
    if (manager.queryRunner?.isTransactionActive) return run(manager);
    // MySQL and MariaDB: READ COMMITTED, so that the locking read takes the journal rows it
    // finds and no gaps (under REPEATABLE READ its next-key locks made concurrent batches
    // deadlock).
    return readCommittedTransaction(manager, run);
  }

  private async run(manager: EntityManager, statements: WriteStatements, rows: readonly AuditLogEntity[], units: readonly string[], markers: readonly string[]): Promise<void> {
    const byteLimit = rows.length > 0 ? await this.statementByteLimit(manager) : DEFAULT_STATEMENT_BYTES;
    const sql: Statement[] = statements.write(rows, units, byteLimit);
    if (markers.length) sql.push(...statements.markers(markers, new Date()));
    if (sql.length === 1) {
      // One statement is atomic on its own.
      await manager.query(sql[0]!.sql, ownStatement(sql[0]!.params));
      return;
    }
    const run = async (target: EntityManager): Promise<void> => {
      for (const statement of sql) await target.query(statement.sql, ownStatement(statement.params));
    };
    await (manager.queryRunner?.isTransactionActive ? run(manager) : manager.transaction(run));
  }

  /**
   * PostgreSQL, once per data source: whether `audit_log` is partitioned by month (its key
   * is then `(id, occurred_at)`, which the INSERT's conflict clause must name).
   */
  private layout(manager: EntityManager, statements: WriteStatements): Promise<void> {
    const dataSource = manager.connection;
    let known = this.layouts.get(dataSource);
    if (!known) {
      const metadata = dataSource.getMetadata(AuditLogEntity);
      known = manager
        .query(`SELECT c.relkind AS kind FROM pg_class c WHERE c.oid = to_regclass($1)`, [escapedTable(dataSource, metadata)])
        .then((result: Array<{ kind: string }>) => statements.setPartitioned(result[0]?.kind === 'p'));
      this.layouts.set(dataSource, known);
      known.catch(() => this.layouts.delete(dataSource));
    }
    return known;
  }

  private statements(dataSource: DataSource): WriteStatements {
    let statements = this.statementsOf.get(dataSource);
    if (!statements) {
      const captured = this.dataSources;
      const entities = captured ? () => captured.captured.flatMap((source) => source.entityMetadatas) : () => dataSource.entityMetadatas;
      this.statementsOf.set(dataSource, (statements = new WriteStatements(dataSource, entities)));
    }
    return statements;
  }
}

