import { Inject, Injectable, Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { CapturedChange } from '../capture/change-set.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { AuditWriteError } from '../exceptions/audit-write.error.js';
import type { AuditActor, AuditTarget } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditWriter } from '../storage/audit.writer.js';

const sameType = (target: AuditTarget, entity: string): boolean =>
  target.type === entity || target.type.toLowerCase() === entity.toLowerCase();

/**
 * Ends units of work: lets intent events claim the pending changes, turns the rest
 * into fallback events, and stores everything in one write.
 */
@Injectable()
export class AuditRecorder {
  private readonly logger = new Logger('Audit');

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly builder: AuditEventBuilder,
    private readonly writer: AuditWriter,
  ) {}

  /**
   * Stores what `unit` has pending. In fail-closed mode a storage failure rejects
   * with `AuditWriteError`; in fail-open mode it is logged and swallowed.
   */
  flush(unit: UnitOfWork): Promise<void> {
    return unit.serialise(async () => {
      if (unit.isIdle) return;
      // Intents with a target claim first, then the handler's event takes the rest.
      const intents = unit.intents.splice(0).sort((a, b) => rank(a) - rank(b));
      const actor = await this.resolveActor(unit);
      const rows: AuditLogEntity[] = [];
      for (const intent of intents) {
        rows.push(this.builder.intentRow(intent, unit, actor, this.claim(unit, intent)));
      }
      for (const change of unit.changes.take(() => true)) {
        rows.push(this.builder.changeRow(change, unit, actor));
      }
      rows.sort((a, b) => (a.id < b.id ? -1 : 1));
      await this.store(rows, intents);
    });
  }

  /** Stores rows now (an event outside any unit of work), optionally in a transaction. */
  async storeNow(rows: AuditLogEntity[], manager?: EntityManager, intents: PendingIntent[] = []): Promise<void> {
    await this.store(rows, intents, manager);
  }

  async resolveActor(unit: UnitOfWork): Promise<AuditActor> {
    try {
      return await unit.resolveActor();
    } catch (error) {
      this.logger.error(`The audit actor resolver threw; recording the actor as unknown: ${String(error)}`);
      return { type: 'unknown' };
    }
  }

  private claim(unit: UnitOfWork, intent: PendingIntent): CapturedChange[] {
    if (intent.claim === 'all') return unit.changes.take(() => true);
    const target = intent.target;
    if (intent.claim === 'target' && target) {
      return unit.changes.take((change) => change.id === target.id && sameType(target, change.entity));
    }
    return [];
  }

  private async store(rows: AuditLogEntity[], intents: PendingIntent[], manager?: EntityManager): Promise<void> {
    if (rows.length === 0) return;
    try {
      if (manager?.queryRunner?.isTransactionActive && this.options.failOpen) {
        // Fail-open inside the caller's transaction: a savepoint keeps a failed audit
        // insert from aborting the transaction it is meant to leave alone.
        await manager.transaction((savepoint) => this.writer.write(rows, savepoint));
      } else {
        await this.writer.write(rows, manager);
      }
      for (const intent of intents) intent.settle?.();
    } catch (cause) {
      const error = new AuditWriteError(rows.length, cause);
      this.logger.error(`${error.message} (${this.options.failOpen ? 'fail-open: continuing' : 'fail-closed'})`);
      for (const intent of intents) intent.settle?.(this.options.failOpen ? undefined : error);
      if (!this.options.failOpen) throw error;
    }
  }
}

const rank = (intent: PendingIntent): number => (intent.claim === 'target' ? 0 : intent.claim === 'all' ? 1 : 2);
