import { Inject, Injectable, Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import { UnitEvents } from '../events/unit-events.js';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import { AuditWriteError } from '../exceptions/audit-write.error.js';
import { JournalRecovery } from '../journal/journal-recovery.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditWriter } from '../storage/audit.writer.js';

/**
 * Ends units of work: once the transactions holding a unit's changes have ended, lets its
 * intent events claim the changes, turns the rest into fallback events, and stores them
 * with the unit's journal rows deleted in the same transaction.
 */
@Injectable()
export class AuditRecorder {
  private readonly logger = new Logger('Audit');

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly events: UnitEvents,
    private readonly writer: AuditWriter,
    private readonly recovery: JournalRecovery,
  ) {}

  /**
   * Settles `unit` and resolves once its events are stored. In fail-closed mode a storage
   * failure rejects with `AuditWriteError` (the unit's events are then retried in the
   * background until stored); in fail-open mode it is logged and swallowed.
   */
  settle(unit: UnitOfWork, maxWaitMs?: number): Promise<void> {
    return unit.settle(() => this.store(unit), maxWaitMs);
  }

  /**
   * For callers that may themselves hold the transaction the unit waits for (a nested
   * `@Audited` method or `runAs` inside its caller's transaction): settles the unit, and
   * returns a promise to await — already resolved when the unit waits for open
   * transactions, in which case its storing is adopted by the enclosing unit (whose own
   * end waits for it) and its failure is logged.
   */
  end(unit: UnitOfWork): Promise<void> {
    const stored = this.settle(unit);
    if (!unit.waitsForTransactions) return stored;
    stored.catch(() => undefined); // logged by store()
    unit.parent?.adopt(stored);
    return Promise.resolve();
  }

  /** Stores rows now (an event outside any unit of work), optionally in a transaction. */
  async storeNow(rows: AuditLogEntity[], manager?: EntityManager): Promise<void> {
    if (rows.length === 0) return;
    try {
      if (manager?.queryRunner?.isTransactionActive && this.options.failOpen) {
        // Fail-open inside the caller's transaction: a savepoint keeps a failed audit
        // insert from aborting the transaction it is meant to leave alone.
        await manager.transaction((savepoint) => this.writer.write(rows, { manager: savepoint }));
      } else {
        await this.writer.write(rows, manager ? { manager } : undefined);
      }
    } catch (cause) {
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
      this.logger.error(`${error.message}; retrying in the background (${this.options.failOpen ? 'fail-open: continuing' : 'fail-closed'})`);
      if (!this.options.failOpen) throw error;
    }
  }

  /**
   * Builds and writes the unit's events. A failure before anything is built (a commit
   * whose outcome is unknown could not be checked) retries the whole; one after, the
   * rows as built — except for a unit with changes only in the journal, which is left to
   * journal recovery as a whole.
   */
  private async write(unit: UnitOfWork): Promise<void> {
    if (unit.uncertainJournalIds.length) {
      try {
        unit.resolveUncertain(await this.recovery.existingJournalIds(unit.uncertainJournalIds));
      } catch (error) {
        this.recovery.retryLater(unit.id, () => this.write(unit));
        throw error;
      }
    }
    const actor = await this.resolveActor(unit);
    const handler = unit.intents.find((intent) => intent.claim === 'all');
    const rows = this.events.build(unit, actor, handler ? unit.spilledRows : 0);
    const journalUnits = unit.journalRows > 0 ? [unit.id] : [];
    try {
      if (unit.spilledRows > 0) {
        const memoryParts = handler ? rows.filter((row) => partOf(row)?.first === handler.id).length || 1 : 0;
        await this.storeSpilled(unit, actor, handler, memoryParts);
      }
      await this.writer.write(rows, { journalUnits });
    } catch (error) {
      // The retry deletes exactly the journal rows the unit wrote, or stores nothing: if
      // another instance took this one for dead meanwhile, it has stored them already.
      const journalIds = [...unit.journalRowIds];
      if (unit.spilledRows === 0) {
        this.recovery.retryLater(unit.id, () =>
          journalIds.length ? this.recovery.replace(journalIds, rows).then(() => undefined) : this.writer.write(rows),
        );
      }
      throw error;
    }
  }

  /**
   * The changes a unit kept only in the journal (too many to keep in memory): read back a
   * few journal rows at a time, each batch stored as parts of the handler's event (or as
   * fallback events) with those journal rows deleted in the same transaction.
   */
  private async storeSpilled(unit: UnitOfWork, actor: AuditActor, handler: PendingIntent | undefined, memoryParts: number): Promise<void> {
    const count = memoryParts + unit.spilledRows;
    let part = memoryParts + 1;
    for await (const batch of this.recovery.spilledBatches(unit.id)) {
      const chunks = batch.map((row) => row.changes);
      const rows = this.events.spilledRows(unit, actor, handler, chunks, part, count);
      await this.recovery.replace(batch.map((row) => row.id), rows);
      part += chunks.length;
    }
  }
}

const partOf = (row: AuditLogEntity): { first?: string } | undefined =>
  (row.context as { part?: { first?: string } } | null)?.part;
