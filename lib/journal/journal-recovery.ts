import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { In, type DataSource, type EntityManager } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { CapturedChange } from '../capture/change-set.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWork } from '../context/unit-of-work.js';
import { UnitEvents } from '../events/unit-events.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditEntities } from '../storage/audit-entities.js';
import { AuditInstanceEntity } from '../storage/audit-instance.entity.js';
import { AuditJournalEntity } from '../storage/audit-journal.entity.js';
import { AuditSubjectEntity } from '../storage/audit-subject.entity.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditWriter } from '../storage/audit.writer.js';
import { AuditJournal } from './audit-journal.js';
import type { JournalEntry } from './journal-entry.js';

/** Units whose events failed to store, kept in memory for the retry, at most. */
const MAX_UNSTORED = 10_000;
/** Units recovered per pass, at most (a pass runs again soon after). */
const UNITS_PER_PASS = 200;

/** Stores a unit whose storing failed; throws while it still cannot. */
type Unstored = () => Promise<void>;

/**
 * Makes sure every journal row becomes events, exactly once:
 * - this instance's lease in `audit_instance`, renewed every third of `recoverAfter`;
 * - units of this instance whose events could not be stored (the database was away, the
 *   insert failed) are retried until stored, with the outcome they had;
 * - journal rows of an instance whose lease is older than `recoverAfter` (it died) — and
 *   this instance's own rows that no live unit owns any more — become the unit's events:
 *   its intent with `outcome: 'unknown'` and `error: { name: 'Interrupted' }` when its
 *   action is known, fallback events otherwise. Each unit's rows are deleted in the
 *   transaction that stores its events, and only if all of them are still there, so two
 *   instances recovering at once never both store it.
 * On shutdown, it waits for the units still running and the writer's queue.
 */
@Injectable()
export class JournalRecovery implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly unstored = new Map<string, Unstored>();
  private timers: NodeJS.Timeout[] = [];
  private pass?: Promise<void>;
  private stopped = false;

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    private readonly journal: AuditJournal,
    private readonly events: UnitEvents,
    private readonly writer: AuditWriter,
    private readonly context: AuditContext,
  ) {}

  get instanceId(): string {
    return this.journal.instanceId;
  }

  /** Fails start-up, clearly, when the data source does not know every entity of the module. */
  onModuleInit(): void {
    if (!this.dataSource.isInitialized) return;
    const missing = AuditEntities.filter((entity) => !this.dataSource.hasMetadata(entity)).map((entity) => entity.name);
    if (missing.length) {
      throw new Error(
        `${missing.join(', ')} ${missing.length === 1 ? 'is not an entity' : 'are not entities'} of the audit module's TypeORM data source: ` +
          "add `...AuditEntities` to the data source's `entities` or set `autoLoadEntities: true`",
      );
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.options.enabled) return;
    try {
      await this.lease();
      // Written only with events whose changes touch other instances than their target: checked now, not at the first such event.
      await this.dataSource.getRepository(AuditSubjectEntity).createQueryBuilder('s').select('s.eventId').where('1 = 0').getRawMany();
    } catch (error) {
      throw new Error(
        `The audit tables are not usable (${(error as Error).message}): run AuditMigrations (or synchronize) so that ` +
          'audit_log, audit_subject, audit_journal and audit_instance exist',
        { cause: error },
      );
    }
    await this.runPass();
    const every = (ms: number, task: () => Promise<unknown>) => {
      const timer = setInterval(() => void task().catch((error: unknown) => this.logger.warn(`Audit journal: ${(error as Error).message}`)), ms);
      timer.unref();
      this.timers.push(timer);
    };
    const { recoverAfter } = this.options;
    every(Math.max(200, Math.floor(recoverAfter / 3)), () => this.lease());
    every(Math.max(200, Math.min(5000, Math.floor(recoverAfter / 2))), () => this.runPass());
  }

  /** Keeps a unit whose events could not be stored, with how to store it, for the retry. */
  retryLater(unitId: string, store: Unstored): void {
    if (this.unstored.size >= MAX_UNSTORED) {
      // The journal still has their changes: they are recovered, with an unknown outcome.
      this.logger.error(`Audit: more than ${MAX_UNSTORED} units wait to be stored; unit ${unitId} is left to journal recovery`);
      return;
    }
    this.unstored.set(unitId, store);
  }

  /** Which of these journal rows exist. */
  async existingJournalIds(ids: readonly string[]): Promise<Set<string>> {
    const rows = await this.dataSource.getRepository(AuditJournalEntity).find({ select: { id: true }, where: { id: In([...ids]) } });
    return new Set(rows.map((row) => row.id));
  }

  /** Runs one retry-and-recovery pass now (one at a time); for tests and operators. */
  runPass(): Promise<void> {
    this.pass ??= this.retryAndRecover().finally(() => (this.pass = undefined));
    return this.pass;
  }

  /** Waits for running units and the writer's queue, within `shutdownTimeout`. */
  async beforeApplicationShutdown(): Promise<void> {
    if (!this.options.enabled) return;
    const deadline = Date.now() + this.options.shutdownTimeout;
    const settled = this.context.whenIdle();
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), this.options.shutdownTimeout).unref());
    if ((await Promise.race([settled, timeout])) === 'timeout') {
      this.logger.warn(`Audit: shutdown went on after ${this.options.shutdownTimeout} ms with units of work still running`);
    }
    await this.writer.drain(Math.max(0, deadline - Date.now())).catch((error: unknown) => this.logger.warn(`Audit: ${(error as Error).message}`));
    await this.pass?.catch(() => undefined);
    if (this.unstored.size) await this.retryUnstored().catch(() => undefined);
    this.stop();
    await this.releaseLease().catch(() => undefined);
  }

  onApplicationShutdown(): void {
    this.stop();
  }

  private stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  private async retryAndRecover(): Promise<void> {
    if (this.stopped || !this.dataSource.isInitialized) return;
    await this.retryUnstored();
    await this.recoverDeadInstances();
    await this.recoverOwnOrphans();
  }

  /** Renews this instance's lease (creating it if it is gone). */
  private async lease(): Promise<void> {
    if (this.stopped || !this.dataSource.isInitialized) return;
    const now = new Date();
    const result = await this.dataSource
      .createQueryBuilder()
      .update(AuditInstanceEntity)
      .set({ heartbeatAt: now })
      .where('id = :id', { id: this.instanceId })
      .execute();
    if (result.affected === 0) {
      await this.dataSource.getRepository(AuditInstanceEntity).insert({ id: this.instanceId, startedAt: now, heartbeatAt: now });
    }
  }

  /** A clean exit with nothing left in the journal needs no recovery: drop the lease. */
  private async releaseLease(): Promise<void> {
    if (!this.dataSource.isInitialized) return;
    const left = await this.dataSource.getRepository(AuditJournalEntity).count({ where: { instanceId: this.instanceId } });
    if (left === 0) await this.dataSource.getRepository(AuditInstanceEntity).delete({ id: this.instanceId });
  }

  private async retryUnstored(): Promise<void> {
    for (const [unitId, store] of [...this.unstored]) {
      this.unstored.delete(unitId);
      try {
        await store();
      } catch (error) {
        if (!this.unstored.has(unitId)) this.unstored.set(unitId, store);
        throw error;
      }
    }
  }

  private cutoff(): Date {
    return new Date(Date.now() - this.options.recoverAfter);
  }

  private async recoverDeadInstances(): Promise<void> {
    const instances = this.dataSource.getRepository(AuditInstanceEntity);
    const journal = this.dataSource.getRepository(AuditJournalEntity);
    const dead = await instances
      .createQueryBuilder('i')
      .select('i.id', 'id')
      .where('i.heartbeatAt < :cutoff AND i.id <> :me', { cutoff: this.dateParam(this.cutoff()), me: this.instanceId })
      .getRawMany<{ id: string }>();
    for (const { id } of dead) {
      const units = await this.unitsOf(id);
      if (units.length === 0) {
        await instances
          .createQueryBuilder()
          .delete()
          .where('id = :id AND heartbeat_at < :cutoff', { id, cutoff: this.dateParam(this.cutoff()) })
          .execute();
        continue;
      }
      for (const unitId of units) await this.recoverUnit(unitId);
    }
    // Rows whose instance has no lease at all (it was removed): recovered once old enough.
    const live = new Set((await instances.find({ select: { id: true } })).map((row) => row.id));
    const orphans = await journal
      .createQueryBuilder('j')
      .select('j.unitId', 'unitId')
      .addSelect('j.instanceId', 'instanceId')
      .where('j.createdAt < :cutoff', { cutoff: this.dateParam(this.cutoff()) })
      .distinct(true)
      .limit(UNITS_PER_PASS)
      .getRawMany<{ unitId: string; instanceId: string }>();
    for (const orphan of orphans) {
      if (!live.has(orphan.instanceId)) await this.recoverUnit(orphan.unitId);
    }
  }

  /** This instance's own rows that no running unit owns and no retry holds (their unit's storing was given up). */
  private async recoverOwnOrphans(): Promise<void> {
    const running = this.context.liveUnitIds();
    for (const unitId of await this.unitsOf(this.instanceId, new Date(Date.now() - Math.min(this.options.recoverAfter, 5000)))) {
      if (!running.has(unitId) && !this.unstored.has(unitId)) await this.recoverUnit(unitId);
    }
  }

  private async unitsOf(instanceId: string, before?: Date): Promise<string[]> {
    const qb = this.dataSource
      .getRepository(AuditJournalEntity)
      .createQueryBuilder('j')
      .select('j.unitId', 'unitId')
      .where('j.instanceId = :instanceId', { instanceId })
      .distinct(true)
      .limit(UNITS_PER_PASS);
    if (before) qb.andWhere('j.createdAt < :before', { before: this.dateParam(before) });
    return (await qb.getRawMany<{ unitId: string }>()).map((row) => row.unitId);
  }

  /**
   * Turns one unit's journal rows into its events: in one transaction, deletes the rows
   * (all of them, or nothing happens: another instance got there first) and stores the events.
   */
  private async recoverUnit(unitId: string): Promise<void> {
    const rows = await this.dataSource.getRepository(AuditJournalEntity).find({ where: { unitId }, order: { createdAt: 'ASC', id: 'ASC' } });
    if (rows.length === 0) return;
    const events = this.eventsOf(rows);
    const recovered = await this.replace(rows.map((row) => row.id), events);
    if (recovered) this.logger.warn(`Audit: recovered ${events.length} event(s) of unit ${unitId} from the journal`);
  }

  /**
   * The journal rows of `unitId` that hold changes the unit kept only there, a few at a
   * time, in order, as captured changes.
   */
  async *spilledBatches(unitId: string, size = 8): AsyncGenerator<Array<{ id: string; changes: CapturedChange[] }>> {
    const journal = this.dataSource.getRepository(AuditJournalEntity);
    let after: string | undefined;
    for (;;) {
      const qb = journal.createQueryBuilder('j').where('j.unitId = :unitId', { unitId });
      if (after) qb.andWhere('j.id > :after', { after });
      const rows = await qb.orderBy('j.id', 'ASC').limit(size).getMany();
      if (rows.length === 0) return;
      after = rows[rows.length - 1]!.id;
      const spilled = rows.filter((row) => row.entry.spilled);
      if (spilled.length) yield spilled.map((row) => ({ id: row.id, changes: capturedChanges(row.entry) }));
    }
  }

  /**
   * Stores `events` and deletes the journal rows `journalIds`, in one transaction, only if
   * every one of those rows is still there (else nothing is stored: another instance has
   * recovered them). Returns whether it stored them.
   */
  replace(journalIds: string[], events: AuditLogEntity[]): Promise<boolean> {
    return this.dataSource
      .transaction(async (manager: EntityManager) => {
        const deleted = await manager.createQueryBuilder().delete().from(AuditJournalEntity).where({ id: In(journalIds) }).execute();
        if (deleted.affected !== journalIds.length) throw new AlreadyRecovered();
        await this.writer.write(events, { manager });
      })
      .then(
        () => true,
        (error: unknown) => {
          if (error instanceof AlreadyRecovered) return false;
          throw error;
        },
      );
  }

  /** The events of a unit known only from its journal rows. */
  private eventsOf(rows: AuditJournalEntity[]): AuditLogEntity[] {
    const last = rows[rows.length - 1]!.entry;
    const unit = new UnitOfWork(
      { source: last.source, request: last.request, actor: last.actor ?? { type: 'unknown' } },
      last.originRequestId,
    );
    for (const row of rows) for (const change of capturedChanges(row.entry)) unit.changes.record(change);
    if (last.action) {
      const at = rows[0]!.entry.changes[0]?.at ?? Date.now();
      unit.addHandlerEvent({
        id: uuidv7(at),
        occurredAt: new Date(at),
        action: last.action,
        outcome: 'unknown',
        error: { name: 'Interrupted' },
        claim: 'all',
      });
    }
    return this.events.build(unit, last.actor ?? { type: 'unknown' });
  }

  /** A time as the driver stores it in the journal's date columns. */
  private dateParam(date: Date): unknown {
    const column = this.dataSource.getMetadata(AuditJournalEntity).findColumnWithPropertyName('createdAt')!;
    return this.dataSource.driver.preparePersistentValue(date, column);
  }
}

class AlreadyRecovered extends Error {}

/** A journal entry's changes as captured changes. */
function capturedChanges(entry: JournalEntry): CapturedChange[] {
  return entry.changes.map(({ at, ...change }) => ({ ...change, at: new Date(at) }));
}
