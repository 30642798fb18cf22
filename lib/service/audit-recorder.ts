import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DataSource, EntityManager } from 'typeorm';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import { UnitEvents } from '../events/unit-events.js';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import { AuditStoreTimeoutError } from '../exceptions/audit-store-timeout.error.js';
import { AuditUnitRecoveredError } from '../exceptions/audit-unit-recovered.error.js';
import { AuditWriteError } from '../exceptions/audit-write.error.js';
import { JournalRecovery } from '../journal/journal-recovery.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditWriter, type AuditWriteOptions } from '../storage/audit.writer.js';
import { isSqlite } from '../storage/drivers.js';
import { AuditDataSources } from '../capture/audit-data-sources.js';
import { inRawWriteTransaction } from '../integrations/typeorm-raw-write-transaction.js';
import { inSavepoint, TransactionLost } from '../storage/savepoint.js';

/**
 * Ends units of work: once the transactions holding a unit's changes have ended, lets its
 * intent events claim the changes, turns the rest into fallback events, and stores them
 * with the unit's journal rows deleted in the same transaction.
 */
@Injectable()
export class AuditRecorder {
  private readonly logger = new Logger('Audit');
  /** Units being stored within `storeTimeout`, until stored or out of time. */
  private readonly storing = new Map<UnitOfWork, PendingStore>();
  /** Checks the deadlines of {@link storing}: armed for the earliest, at most one at a time. */
  private storeTimer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly events: UnitEvents,
    private readonly writer: AuditWriter,
    private readonly recovery: JournalRecovery,
    private readonly dataSources: AuditDataSources,
  ) {}

  /**
   * Settles `unit` and resolves once its events are stored. In fail-closed mode a storage
   * failure rejects with `AuditWriteError` (the unit's events are then retried in the
   * background until stored); in fail-open mode it is logged and swallowed.
   */
  settle(unit: UnitOfWork, maxWaitMs?: number): Promise<void> {
    return unit.settle(() => this.storeWithin(unit), maxWaitMs);
  }

  /**
   * `store`, answered within `storeTimeout` of the last progress (the start, or a part of a
   * large unit stored): a database that stops answering holds a statement for ever. Past
   * it, fail-closed fails with `AuditWriteError` caused by `AuditStoreTimeoutError` and
   * fail-open goes on; the store itself goes on, and ends (or is retried) as it would.
   */
  private storeWithin(unit: UnitOfWork): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: PendingStore = { last: Date.now(), resolve, reject };
      this.storing.set(unit, pending);
      this.armStoreTimer(pending.last + this.options.storeTimeout);
      this.store(unit).then(
        () => {
          this.storing.delete(unit);
          resolve();
        },
        (error: unknown) => {
          this.storing.delete(unit);
          reject(error);
        },
      );
    });
  }

  /**
   * Arms the timer that checks the units being stored, for `deadline`, unless it is armed:
   * then for a deadline no later (a unit's deadline only moves later, and one stored next
   * starts last). One timer for all units, not one each; not cleared when they are stored
   * (it then fires once more, and finds none), unref'd.
   */
  private armStoreTimer(deadline: number): void {
    if (this.storeTimer) return;
    this.storeTimer = setTimeout(() => this.checkStoreDeadlines(), deadline - Date.now());
    this.storeTimer.unref();
  }

  /** The units out of time: fail-closed, their answer fails; fail-open, it goes on. Armed again for the next deadline. */
  private checkStoreDeadlines(): void {
    this.storeTimer = undefined;
    const limit = this.options.storeTimeout;
    const now = Date.now();
    let next = Infinity;
    for (const [unit, pending] of this.storing) {
      const deadline = pending.last + limit;
      if (deadline > now) {
        next = Math.min(next, deadline);
        continue;
      }
      this.storing.delete(unit);
      const error = new AuditWriteError(unit.intents.length || 1, new AuditStoreTimeoutError(limit));
      this.logger.error(`${error.message} (${this.options.failOpen ? 'fail-open: continuing' : 'fail-closed'})`);
      if (this.options.failOpen) pending.resolve();
      else pending.reject(error);
    }
    if (next !== Infinity) this.armStoreTimer(next);
  }

  /**
   * For units that end inside another (a nested `@Audited` method, `runAs`, a resolver
   * call), whose caller may hold the transaction the unit waits for: settles the unit,
   * has the enclosing unit adopt its storing (its own end waits for it and fails with
   * it), and returns a promise to await — already resolved when the unit waits for open
   * transactions (awaiting it could deadlock its caller), its failure then logged.
   */
  end(unit: UnitOfWork): Promise<void> {
    const stored = this.settle(unit);
    // The enclosing unit (a request) answers for it too: it waits for it, and fails with it.
    unit.parent?.adopt(stored);
    if (!unit.waitsForTransactions) return stored;
    stored.catch(() => undefined); // logged by store()
    return Promise.resolve();
  }

  /**
   * Stores a unit that ends without settling: the carrier of changes journaled outside the
   * audit data source that no live unit claims. A failure is logged and retried in the
   * background (its journal rows stay until then).
   */
  storeEnded(unit: UnitOfWork): Promise<void> {
    const stored = this.store(unit).catch(() => undefined);
    this.recovery.storing(unit.id, stored);
    return stored;
  }

  /** Stores rows now (an event outside any unit of work), optionally in a transaction of the audit data source. */
  async storeNow(rows: AuditLogEntity[], given?: EntityManager): Promise<void> {
    if (rows.length === 0) return;
    // A manager of another data source than the audit one cannot write `audit_log`: stored at once.
    const manager = given?.connection === this.dataSources.audit ? given : undefined;
    try {
      if (manager?.queryRunner?.isTransactionActive && this.options.failOpen) {
        // Fail-open inside the caller's transaction: a savepoint keeps a failed audit
        // insert from aborting the transaction it is meant to leave alone; in a transaction
        // the module opened around a raw write, sent as statements (see inRawWriteTransaction).
        if (inRawWriteTransaction(manager.queryRunner)) await inSavepoint(manager, 'nestjs_system_audit', () => this.writer.write(rows, { manager }));
        else await manager.transaction((savepoint) => this.writer.write(rows, { manager: savepoint }));
      } else {
        await this.writer.write(rows, manager ? { manager } : undefined);
      }
    } catch (cause) {
      // The savepoint could not be rolled back to, the server rolled the whole transaction
      // back (an InnoDB deadlock does): fail-open does not pass over it, no write is left to keep.
      if (cause instanceof TransactionLost) throw cause.cause;
      const error = new AuditWriteError(rows.length, cause);
      this.logger.error(`${error.message} (${this.options.failOpen ? 'fail-open: continuing' : 'fail-closed'})`);
      if (!this.options.failOpen) throw error;
    }
  }

  async resolveActor(unit: UnitOfWork): Promise<AuditActor> {
    try {
      return await unit.resolveActor();
    } catch (error) {
      this.logger.error(`The audit actor resolver threw; recording the actor as unknown: ${String(error)}`);
      return { type: 'unknown' };
    }
  }

  private async store(unit: UnitOfWork): Promise<void> {
    if (unit.gaveUpWaiting) {
      this.logger.warn(`Audit: unit ${unit.id} (request ${unit.request.requestId ?? '-'}) stopped waiting for a transaction holding its changes; storing it without them (they are recorded as its fallback events when that transaction commits)`);
    }
    if (unit.isIdle) return;
    try {
      await this.write(unit);
    } catch (cause) {
      const error = new AuditWriteError(1, cause);
      // Recovered by another instance (this one was taken for dead): its record is that one, nothing is retried.
      const next = cause instanceof AuditUnitRecoveredError ? 'its recovered record stands, and what it wrote since is recorded as recovery records it' : 'retrying in the background';
      this.logger.error(`${error.message}; ${next} (${this.options.failOpen ? 'fail-open: continuing' : 'fail-closed'})`);
      if (!this.options.failOpen) throw error;
    }
  }

  /**
   * Builds and writes the unit's events. A failure before anything is built (a commit
   * whose outcome is unknown could not be checked) retries the whole; one after retries
   * the rows as built (and what is left of the changes kept only in the journal).
   */
  private async write(unit: UnitOfWork): Promise<void> {
    const uncertain = unit.uncertainJournalIds;
    if (uncertain.size) {
      try {
        unit.resolveUncertain(await this.recovery.existingJournalIds(uncertain));
      } catch (error) {
        this.recovery.retryLater(unit.id, () => this.write(unit));
        throw error;
      }
    }
    const actor = await this.resolveActor(unit);
    const handler = unit.intents.find((intent) => intent.claim === 'all');
    const rows = this.events.build(unit, actor, handler ? unit.spilledRows : 0);
    // A unit its parent left running: what it did before it was cut loose, as attributed then.
    if (unit.early) rows.unshift(...this.events.build(unit.early, await this.resolveActor(unit.early)));
    const memoryIds = this.journalRows(unit, (id) => !unit.spilledRowIds.includes(id));
    const spilled: SpilledParts | undefined = unit.spilledRows > 0 ? { actor, handler, count: 0, next: 0, stored: new Set(), tried: new Set() } : undefined;
    if (spilled) {
      // Parts of the handler's event built from memory; none when all its changes were spilled.
      const memoryParts = handler ? rows.filter((row) => partOf(row)?.first === handler.id).length : 0;
      spilled.count = memoryParts + unit.spilledRows;
      spilled.next = memoryParts + 1;
    }
    const store = async (first: boolean): Promise<void> => {
      if (spilled) {
        try {
          await this.storeSpilled(unit, spilled, rows.length);
        } catch (error) {
          // Recovered by another instance since the first attempt: its record is stored, nothing is left to retry.
          if (!first && error instanceof AuditUnitRecoveredError) return;
          throw error;
        }
      }
      // The first attempt deletes the unit's journal rows with its events (grouped with
      // other units' by the writer), and stores them only if all those rows were still
      // there. A retry deletes exactly the rows the unit wrote, or stores nothing: if
      // another instance took this one for dead meanwhile and stored them, they are gone.
      const elsewhere = [...memoryIds.keys()].filter((dataSource) => dataSource !== this.dataSources.audit);
      if (first && (elsewhere.length === 0 || elsewhere.some(isSqlite))) {
        // SQLite runs every transaction of a data source on its one connection, the app's
        // open ones included: the rows there are checked first and deleted after the insert.
        await this.stillJournaledElsewhere(memoryIds, rows.length);
        await this.writer.write(rows, this.journalOf(unit, memoryIds.get(this.dataSources.audit)));
      } else if (memoryIds.size) {
        // Journal rows in other data sources (or a retry): their transactions delete them
        // (locking them against a recovery) around the one that stores the events, with a
        // marker per row for the moment between the commits.
        const outcome = await this.recovery.replace(memoryIds, rows, unit.id);
        if (first && outcome !== 'stored') throw new AuditUnitRecoveredError(rows.length);
      } else await this.writer.write(rows);
    };
    try {
      await store(true);
    } catch (error) {
      // Recovered by another instance: its record is stored, there is nothing to retry; the
      // journal rows the unit wrote since are recorded now, as recovery would record them.
      if (error instanceof AuditUnitRecoveredError) await this.recovery.recoverLeftOf(unit.id);
      else this.recovery.retryLater(unit.id, () => store(false));
      throw error;
    }
  }

  /**
   * The changes a unit kept only in the journal (too many to keep in memory): read back a
   * few journal rows at a time, each batch stored as parts of the handler's event (or as
   * fallback events) with those journal rows deleted in the same transaction. Resumes
   * where it stopped when retried. A spilled row that is gone, and was not stored here,
   * was recovered by another instance (which took this one for dead): the unit's record
   * is that one, and the rest of its events are not stored
   * ({@link AuditUnitRecoveredError}).
   */
  private async storeSpilled(unit: UnitOfWork, spilled: SpilledParts, memoryEvents: number): Promise<void> {
    // The events not stored: the spilled parts from `next` on, and those built from memory.
    const gone = (): AuditUnitRecoveredError => new AuditUnitRecoveredError(spilled.count - spilled.next + 1 + memoryEvents);
    // Before the first part: every row the unit wrote must still be there. One that is gone
    // was recovered by another instance, whose record is the unit's; parts stored now
    // would give the rest the handler's outcome beside it.
    if (spilled.stored.size === 0 && (await this.recovery.existingJournalIds(unit.journalSources)).size < unit.journalRows) throw gone();
    for (const [dataSource] of this.journalRows(unit, (id) => unit.spilledRowIds.includes(id))) {
      for await (const batch of this.recovery.spilledBatches(unit.id, dataSource)) {
        const chunks = batch.map((row) => row.changes);
        const rows = this.events.spilledRows(unit, spilled.actor, spilled.handler, chunks, spilled.next, spilled.count);
        const ids = batch.map((row) => row.id);
        // Elsewhere, each row gets a marker: recovery then knows these parts are stored.
        const outcome = await this.recovery.replace(new Map([[dataSource, ids]]), rows, unit.id, ids);
        // Stored before: by this unit in an earlier try (its commit elsewhere failed), or by
        // another instance's recovery — then the unit's record is that one.
        const markedByOther = outcome === 'marked' && ids.some((id) => !spilled.tried.has(id));
        for (const id of ids) spilled.tried.add(id);
        if (outcome === 'gone' || markedByOther) throw gone();
        for (const id of ids) spilled.stored.add(id);
        spilled.next += chunks.length;
        // A part stored: the unit's time (if it is being stored within `storeTimeout`) starts again.
        const pending = this.storing.get(unit);
        if (pending) pending.last = Date.now();
      }
    }
    if (unit.spilledRowIds.some((id) => !spilled.stored.has(id))) throw gone();
  }

  /**
   * Before a unit's first write: its journal rows in data sources other than the audit one
   * (which the writer deletes only after the insert, in their own transactions) must all
   * still be there; if one is gone, another instance took this one for dead and recovered
   * the unit, whose record is that one ({@link AuditUnitRecoveredError}). The rows in the
   * audit data source the writer checks itself, in its transaction.
   */
  private async stillJournaledElsewhere(rows: ReadonlyMap<DataSource, string[]>, eventCount: number): Promise<void> {
    const elsewhere = new Map([...rows].filter(([dataSource, ids]) => dataSource !== this.dataSources.audit && ids.length > 0));
    if (elsewhere.size === 0) return;
    const expected = [...elsewhere.values()].reduce((sum, ids) => sum + ids.length, 0);
    if ((await this.recovery.existingJournalIds(elsewhere)).size < expected) throw new AuditUnitRecoveredError(eventCount);
    // A recovery whose commit in that data source failed: its rows are back, their events stored.
    if ((await this.recovery.markedRows([...elsewhere.values()].flat())).size > 0) throw new AuditUnitRecoveredError(eventCount);
  }

  /** The unit's journal rows that `keep` keeps, by data source. */
  private journalRows(unit: UnitOfWork, keep: (id: string) => boolean): Map<DataSource, string[]> {
    const out = new Map<DataSource, string[]>();
    for (const [dataSource, ids] of unit.journalSources) {
      const kept = ids.filter(keep);
      if (kept.length) out.set(dataSource, kept);
    }
    return out;
  }

  /**
   * What the writer deletes of the unit's journal with its events: rows in the audit data
   * source with them (all of `own`, or the events are not stored), rows elsewhere right after.
   */
  private journalOf(unit: UnitOfWork, own: readonly string[] | undefined): AuditWriteOptions {
    if (unit.journalRows === 0) return {};
    const audit = this.dataSources.audit;
    if (unit.journalSources.size === 1 && unit.journalSources.has(audit)) return { journalUnits: [unit.id], ...(own?.length ? { journalRows: own } : {}) };
    const elsewhere = [...unit.journalSources.keys()].filter((dataSource) => dataSource !== audit);
    return {
      journalUnits: unit.journalSources.has(audit) ? [unit.id] : [],
      ...(elsewhere.length ? { journalElsewhere: elsewhere.map((dataSource) => ({ dataSource, unitIds: [unit.id] })) } : {}),
    };
  }

}

/** A unit being stored within `storeTimeout`: its last progress (the start, or a part stored), and its answer's settlers. */
interface PendingStore {
  last: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** A spilled unit's parts as they are stored: how many in all, the next one's number, the journal rows stored so far. */
interface SpilledParts {
  actor: AuditActor;
  handler: PendingIntent | undefined;
  count: number;
  next: number;
  stored: Set<string>;
  /** The journal rows it tried to store (their markers, found on a retry, may be its own). */
  tried: Set<string>;
}

const partOf = (row: AuditLogEntity): { first?: string } | undefined =>
  (row.context as { part?: { first?: string } } | null)?.part;
