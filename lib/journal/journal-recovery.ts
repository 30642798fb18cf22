import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
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
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditDataSources } from '../capture/audit-data-sources.js';
import type { CapturedChange } from '../capture/change-set.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWork } from '../context/unit-of-work.js';
import { actorFromJournal } from '../events/actor-pseudonyms.js';
import { UnitEvents } from '../events/unit-events.js';
import { uuidv7 } from '../events/uuid-v7.js';
import { AuditUnitRecoveredError } from '../exceptions/audit-unit-recovered.error.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditInstanceEntity } from '../storage/audit-instance.entity.js';
import { AuditJournalEntity } from '../storage/audit-journal.entity.js';
import { AuditSubjectEntity } from '../storage/audit-subject.entity.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditWriter } from '../storage/audit.writer.js';
import { retryTransient } from '../storage/database-errors.js';
import { JournalIndex } from '../storage/journal-index.js';
import { readCommittedTransaction } from '../storage/read-committed.js';
import { escapedTable } from '../storage/sql.js';
import { isSqlite } from '../storage/drivers.js';
import { ownStatement } from '../capture/own-statements.js';
import { AuditJournal } from './audit-journal.js';
import { MARKER_ENTRY, type JournalEntry } from './journal-entry.js';
import { findQuietly } from '../storage/quiet-find.js';

/** Units whose events failed to store, kept in memory for the retry, at most. */
const MAX_UNSTORED = 10_000;
/** Units recovered per pass, at most (a pass runs again soon after). */
const UNITS_PER_PASS = 200;

/** Stores a unit whose storing failed; throws while it still cannot. */
type Unstored = () => Promise<void>;

/** Journal row ids, by the data source whose journal holds them. */
export type JournalRows = ReadonlyMap<DataSource, readonly string[]>;

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
 * Every captured data source keeps a journal: all of them are scanned, and their units'
 * events go to the audit data source. A unit whose journal is in another data source is
 * stored with a marker row in the audit data source's journal, in the insert's
 * transaction, while its rows there are locked (deleted in a transaction that commits
 * after the insert): a crash between the two leaves the marker, and the next recovery
 * deletes the rows without storing the events again.
 * On shutdown, it waits for the units still running and the writer's queue.
 */
@Injectable()
export class JournalRecovery implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly unstored = new Map<string, Unstored>();
  private readonly beingStored = new Map<string, Promise<void>>();
  private timers: NodeJS.Timeout[] = [];
  private pass?: Promise<void>;
  /** A pass asked for while one was running: it starts when that one ends (one, however often it is asked for). */
  private nextPass?: Promise<void>;
  private stopped = false;
  private shuttingDown?: Promise<void>;
  /** Per data source, the journal's unit id index (see {@link journalIndex}). */
  private readonly journalIndexes = new WeakMap<DataSource, JournalIndex>();

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly dataSources: AuditDataSources,
    private readonly journal: AuditJournal,
    private readonly events: UnitEvents,
    private readonly writer: AuditWriter,
    private readonly context: AuditContext,
  ) {}

  get instanceId(): string {
    return this.journal.instanceId;
  }

  /** The audit data source: `audit_log`, the leases, and its own journal. */
  private get dataSource(): DataSource {
    return this.dataSources.audit;
  }

  /** Every data source with a journal: the audit one first, then the other captured ones. */
  private get journals(): readonly DataSource[] {
    return this.options.enabled ? [this.dataSource, ...this.dataSources.others] : [this.dataSource];
  }

  /** Fails start-up, clearly, naming the data source that lacks an entity of the module. */
  onModuleInit(): void {
    this.dataSources.checkEntities(this.options.enabled);
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
    every(Math.max(200, Math.min(5000, Math.floor(recoverAfter / 2))), () => this.timedPass());
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

  /** Follows a unit being stored that no running unit of work stands for (not an orphan meanwhile). */
  storing(unitId: string, stored: Promise<void>): void {
    this.beingStored.set(unitId, stored);
    void stored.finally(() => this.beingStored.delete(unitId));
  }

  /**
   * Which of these journal rows exist, each looked for in its own data source's journal.
   */
  async existingJournalIds(rows: ReadonlyMap<DataSource, readonly string[]>): Promise<Set<string>> {
    const found = new Set<string>();
    for (const [dataSource, ids] of rows) {
      for (const chunk of chunks(ids, IDS_PER_STATEMENT)) {
        const existing = await findQuietly(dataSource.getRepository(AuditJournalEntity), { select: { id: true }, where: { id: In(chunk) } });
        for (const row of existing) found.add(row.id);
      }
    }
    return found;
  }

  /**
   * Runs a retry-and-recovery pass that starts now or, while one is running, as soon as it
   * ends (one at a time); for tests and operators. A pass already under way may have read
   * the journal before the caller's last write: it is not the one the caller waits for.
   * Once the shutdown has begun, no pass starts: the one running is returned, if any.
   */
  runPass(): Promise<void> {
    // Shutting down: no pass starts any more (the shutdown waits for the one running).
    if (this.shuttingDown || this.stopped) return this.pass ?? Promise.resolve();
    if (!this.pass) {
      this.pass = this.retryAndRecover().finally(() => (this.pass = undefined));
      return this.pass;
    }
    this.nextPass ??= this.pass
      .catch(() => undefined)
      .then(() => {
        this.nextPass = undefined;
        return this.runPass();
      });
    return this.nextPass;
  }

  /** The timer's pass: none more while one is running or waiting. */
  private timedPass(): Promise<void> {
    return this.nextPass ?? this.pass ?? this.runPass();
  }

  /** Waits for running units and the writer's queue, within `shutdownTimeout` (once, however often it is called). */
  beforeApplicationShutdown(): Promise<void> {
    this.shuttingDown ??= this.shutDown();
    return this.shuttingDown;
  }

  private async shutDown(): Promise<void> {
    if (!this.options.enabled) return;
    const deadline = Date.now() + this.options.shutdownTimeout;
    // A request the framework dropped would be settled only by its timer, a minute on: now.
    this.context.settleDropped();
    const settled = this.context.whenIdle().then(() => Promise.all(this.beingStored.values()));
    if (!(await settledBy(settled, deadline))) {
      this.logger.warn(`Audit: shutdown went on after ${this.options.shutdownTimeout} ms with units of work still running`);
    }
    await this.writer.drain(Math.max(0, deadline - Date.now())).catch((error: unknown) => this.logger.warn(`Audit: ${(error as Error).message}`));
    // The pass running (and one queued before the shutdown, which starts none after it), within what is left of shutdownTimeout.
    const passes = (async () => {
      for (let pass = this.nextPass ?? this.pass; pass; pass = this.nextPass ?? this.pass) await pass.catch(() => undefined);
    })();
    if (!(await settledBy(passes, deadline))) {
      this.logger.warn(`Audit: shutdown went on after ${this.options.shutdownTimeout} ms with a recovery pass still running (its transaction rolls back)`);
    }
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
    const failure = await this.retryUnstored();
    await this.recoverDeadInstances();
    await this.recoverOwnOrphans();
    if (failure !== undefined) throw failure;
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
      .callListeners(false)
      .execute();
    if (result.affected === 0) {
      await this.dataSource
        .createQueryBuilder()
        .insert()
        .into(AuditInstanceEntity)
        .values({ id: this.instanceId, startedAt: now, heartbeatAt: now })
        .callListeners(false)
        .execute();
    }
  }

  /** A clean exit with nothing left in the journal needs no recovery: drop the lease. */
  private async releaseLease(): Promise<void> {
    if (!this.dataSource.isInitialized) return;
    let left = 0;
    for (const dataSource of this.journals) left += await dataSource.getRepository(AuditJournalEntity).count({ where: { instanceId: this.instanceId } });
    if (left === 0) await this.dataSource.createQueryBuilder().delete().from(AuditInstanceEntity).where({ id: this.instanceId }).callListeners(false).execute();
  }

  /**
   * Stores the units kept for a retry. One that still fails stays for the next pass and
   * the others are tried all the same; the first failure is thrown after the pass's
   * recovery (a unit that cannot be stored yet must not hold up the recovery of other
   * instances' rows). A unit another instance recovered meanwhile is done: its record is
   * that one.
   */
  private async retryUnstored(): Promise<unknown> {
    let failure: unknown;
    for (const [unitId, store] of [...this.unstored]) {
      this.unstored.delete(unitId);
      try {
        await store();
      } catch (error) {
        if (error instanceof AuditUnitRecoveredError) continue;
        if (!this.unstored.has(unitId)) this.unstored.set(unitId, store);
        failure ??= error;
      }
    }
    return failure;
  }

  private cutoff(): Date {
    return new Date(Date.now() - this.options.recoverAfter);
  }

  private async recoverDeadInstances(): Promise<void> {
    const instances = this.dataSource.getRepository(AuditInstanceEntity);
    const dead = await instances
      .createQueryBuilder('i')
      .select('i.id', 'id')
      .where('i.heartbeatAt < :cutoff AND i.id <> :me', { cutoff: this.dateParam(this.dataSource, this.cutoff()), me: this.instanceId })
      .getRawMany<{ id: string }>();
    for (const { id } of dead) {
      let left = 0;
      for (const dataSource of this.journals) {
        const units = await this.unitsOf(dataSource, id);
        left += units.length;
        for (const unitId of units) await this.recoverUnit(unitId, dataSource);
      }
      if (left === 0) {
        await instances
          .createQueryBuilder()
          .delete()
          .where('id = :id AND heartbeat_at < :cutoff', { id, cutoff: this.dateParam(this.dataSource, this.cutoff()) })
          .callListeners(false)
          .execute();
      }
    }
    // Rows whose instance has no lease at all (it was removed; a marker has none): recovered once old enough.
    const live = new Set((await findQuietly(instances, { select: { id: true } })).map((row) => row.id));
    for (const dataSource of this.journals) {
      const orphans = await dataSource
        .getRepository(AuditJournalEntity)
        .createQueryBuilder('j')
        .select('j.unitId', 'unitId')
        .addSelect('j.instanceId', 'instanceId')
        .where('j.createdAt < :cutoff', { cutoff: this.dateParam(dataSource, this.cutoff()) })
        .distinct(true)
        .limit(UNITS_PER_PASS)
        .getRawMany<{ unitId: string; instanceId: string }>();
      for (const orphan of orphans) {
        if (!live.has(orphan.instanceId)) await this.recoverUnit(orphan.unitId, dataSource);
      }
    }
  }

  /**
   * Records now what a unit that another instance recovered (this one was taken for dead)
   * wrote to the journal since: its rows become the unit's recovered events (or nothing
   * happens, when another instance got there first). Rows it could not take are left to
   * the periodic pass.
   */
  async recoverLeftOf(unitId: string): Promise<void> {
    for (const dataSource of this.journals) {
      try {
        await this.recoverUnit(unitId, dataSource);
      } catch (error) {
        this.logger.warn(`Audit: the journal rows unit ${unitId} left are left to recovery: ${(error as Error).message}`);
      }
    }
  }

  /** This instance's own rows that no running unit owns and no retry holds (their unit's storing was given up). */
  private async recoverOwnOrphans(): Promise<void> {
    const running = this.context.liveUnitIds();
    const before = new Date(Date.now() - Math.min(this.options.recoverAfter, 5000));
    for (const dataSource of this.journals) {
      for (const unitId of await this.unitsOf(dataSource, this.instanceId, before)) {
        if (!running.has(unitId) && !this.unstored.has(unitId) && !this.beingStored.has(unitId)) await this.recoverUnit(unitId, dataSource);
      }
    }
  }

  private async unitsOf(dataSource: DataSource, instanceId: string, before?: Date): Promise<string[]> {
    const qb = dataSource
      .getRepository(AuditJournalEntity)
      .createQueryBuilder('j')
      .select('j.unitId', 'unitId')
      .where('j.instanceId = :instanceId', { instanceId })
      .distinct(true)
      .limit(UNITS_PER_PASS);
    if (before) qb.andWhere('j.createdAt < :before', { before: this.dateParam(dataSource, before) });
    return (await qb.getRawMany<{ unitId: string }>()).map((row) => row.unitId);
  }

  /** Which of these ids have a marker in the audit data source's journal. */
  /**
   * Which of these journal rows (of another data source) have a marker in the audit data
   * source's journal: their events are stored.
   */
  async markedRows(ids: readonly string[]): Promise<Set<string>> {
    const byMarker = new Map(ids.map((id) => [rowMarkerId(id), id]));
    const found = await this.existingJournalIds(new Map([[this.dataSource, [...byMarker.keys()]]]));
    return new Set([...found].map((marker) => byMarker.get(marker)!));
  }

  /**
   * Turns one unit's journal rows into its events: in one transaction, deletes the rows
   * (all of them, or nothing happens: another instance got there first) and stores the events.
   */
  private async recoverUnit(unitId: string, dataSource: DataSource): Promise<void> {
    const rows = await findQuietly(dataSource.getRepository(AuditJournalEntity), { where: { unitId }, order: { createdAt: 'ASC', id: 'ASC' } });
    if (rows.length === 0) return;
    const changed = rows.filter((row) => !row.entry.stored);
    if (changed.length < rows.length) {
      // A marker: the unit's events are stored. While its rows elsewhere are left, their own
      // recovery clears them, then it. Rows this read returned are not elsewhere (one table of
      // two data sources on one database): they are cleared here.
      const read = new Set(rows.map((row) => row.id));
      for (const other of this.journals) {
        if (other !== dataSource && (await this.hasOtherRows(other, unitId, read))) return;
      }
    }
    const ids = rows.map((row) => row.id);
    if (dataSource === this.dataSource) {
      // In the audit data source, the rows are deleted in the transaction that stores their
      // events: no marker. Its journal table may be another data source's too (two data
      // sources on one database): there, the markers read with the rows say whose events
      // are stored — the unit's marker all of them, a row's marker that row's.
      const markers = new Set(rows.filter((row) => row.entry.stored).map((row) => row.id));
      const unstored = markers.has(unitId) ? [] : changed.filter((row) => !markers.has(rowMarkerId(row.id)));
      const events = unstored.length ? this.eventsOf(unstored) : [];
      // A unit storing the rows may commit their markers after this read (its delete of them,
      // in the other data source's transaction, then rolled back): looked for again after the
      // DELETE. Only other data sources' rows get markers.
      const recheck = this.dataSources.others.length > 0 ? unstored.map((row) => row.id) : [];
      const outcome = await this.replaceRows(new Map([[dataSource, ids]]), events, unitId, [], [], recheck);
      if (outcome === 'stored' && events.length) this.logger.warn(`Audit: recovered ${events.length} event(s) of unit ${unitId} from the journal`);
      return;
    }
    // Elsewhere, the events of rows with a marker are stored: the unit's own marker (its
    // events stored whole by the writer, whose delete of these rows did not happen) stands
    // for all its rows; a row's marker (a part of a unit past its memory bound, or an
    // earlier recovery of the row) for that row. Recovery marks the rows it stores one by
    // one: a unit's marker would also pass rows the unit writes afterwards (an instance
    // taken for dead that resumes) for stored, while it is still there.
    const byUnit = (await this.existingJournalIds(new Map([[this.dataSource, [unitId]]]))).size > 0;
    const stored = byUnit ? new Set(ids) : await this.markedRows(ids);
    const unstored = changed.filter((row) => !stored.has(row.id));
    const events = unstored.length ? this.eventsOf(unstored) : [];
    // The unit's marker stays while it has rows in another data source's journal still.
    const stale = [...stored].filter((id) => id !== unitId);
    const outcome = await this.replaceRows(new Map([[dataSource, ids]]), events, unitId, unstored.map((row) => row.id), stale);
    if (outcome === 'stored' && events.length) this.logger.warn(`Audit: recovered ${events.length} event(s) of unit ${unitId} from the journal`);
    if (byUnit && outcome !== 'gone') {
      for (const other of this.journals) {
        if (other !== this.dataSource && (await other.getRepository(AuditJournalEntity).count({ where: { unitId } })) > 0) return;
      }
      await this.dataSource
        .createQueryBuilder()
        .delete()
        .from(AuditJournalEntity)
        .where({ id: unitId })
        .callListeners(false)
        .execute()
        .catch((error: unknown) => this.logger.warn(`Audit: a journal marker was not deleted (recovery will): ${(error as Error).message}`));
    }
  }

  /**
   * Whether `dataSource`'s journal holds rows of `unitId` other than those `read`: two data
   * sources on one database share one journal table, where the rows read are its rows too.
   */
  private async hasOtherRows(dataSource: DataSource, unitId: string, read: ReadonlySet<string>): Promise<boolean> {
    const found = await findQuietly(dataSource.getRepository(AuditJournalEntity), { select: { id: true }, where: { unitId }, take: read.size + 1 });
    return found.some((row) => !read.has(row.id));
  }

  /**
   * The journal rows of `unitId` that hold changes the unit kept only there, a few at a
   * time, in order, as captured changes.
   */
  async *spilledBatches(unitId: string, dataSource: DataSource, size = 8): AsyncGenerator<Array<{ id: string; changes: CapturedChange[] }>> {
    const journal = dataSource.getRepository(AuditJournalEntity);
    let after: string | undefined;
    for (;;) {
      const qb = journal.createQueryBuilder('j').where('j.unitId = :unitId', { unitId });
      if (after) qb.andWhere('j.id > :after', { after });
      const rows = await qb.orderBy('j.id', 'ASC').limit(size).callListeners(false).getMany();
      if (rows.length === 0) return;
      after = rows[rows.length - 1]!.id;
      const spilled = rows.filter((row) => row.entry.spilled);
      if (spilled.length) yield spilled.map((row) => ({ id: row.id, changes: capturedChanges(row.entry) }));
    }
  }

  /**
   * Stores `events` of unit `unitId` and deletes the journal rows `journal`, only if every
   * one of those rows is still there (else nothing is stored, `gone`: another instance has
   * recovered them). In the audit data source, one transaction. Rows in another data
   * source are deleted in a transaction of that data source that commits after the insert
   * (the delete locks them against a second recovery); the insert's transaction first
   * looks for the markers of the `markedRows` (by default the rows elsewhere) — all there,
   * the events were stored already and are not stored again (`marked`: the rows are only
   * deleted); some there, part of them was recovered elsewhere (`gone`) — and otherwise
   * writes them with the events (`stored`); the markers (and those of `staleRows`) are
   * deleted last. The rows of the audit data source in `recheck` are rows of another data
   * source too (two data sources on one database, one journal table): once they are
   * deleted, their markers are looked for in the same transaction (see {@link storedSince}).
   */
  replace(journal: JournalRows, events: AuditLogEntity[], unitId: string, markedRows?: readonly string[]): Promise<ReplaceOutcome> {
    const elsewhere = [...journal].flatMap(([dataSource, ids]) => (dataSource === this.dataSource ? [] : ids));
    // The audit data source's journal table may be another data source's too (two data
    // sources on one database): its rows may have been stored by a recovery through that
    // data source, which marked them, and whose DELETE of them then rolled back.
    const recheck = this.dataSources.others.length > 0 ? (journal.get(this.dataSource) ?? []) : [];
    return this.replaceRows(journal, events, unitId, markedRows ?? elsewhere, [], recheck);
  }

  private async replaceRows(
    journal: JournalRows,
    events: AuditLogEntity[],
    unitId: string,
    markedRows: readonly string[],
    staleRows: readonly string[] = [],
    recheck: readonly string[] = [],
  ): Promise<ReplaceOutcome> {
    // Another connection to the audit data source's SQLite file: one of the two writes at a
    // time, so its rows are deleted here, in the transaction that stores their events (the
    // same table), not in a transaction of its own around it (which would hold the file).
    const own = [...(journal.get(this.dataSource) ?? [])];
    const elsewhere: Array<[DataSource, readonly string[]]> = [];
    const folded = new Set<string>();
    for (const [dataSource, ids] of journal) {
      if (dataSource === this.dataSource || ids.length === 0) continue;
      if (!sameSqliteFile(dataSource, this.dataSource)) elsewhere.push([dataSource, ids]);
      else {
        own.push(...ids);
        for (const id of ids) folded.add(id);
      }
    }
    // A row's marker has an id of its own, not the row's: two data sources may share one journal table.
    const markers = markedRows.filter((id) => !folded.has(id)).map(rowMarkerId);
    const staleMarkers = staleRows.map(rowMarkerId);
    let outcome: 'stored' | 'marked' = 'stored';
    const deleteAll = async (manager: EntityManager, ids: readonly string[]): Promise<void> => {
      let deleted = 0;
      for (const chunk of chunks(ids, IDS_PER_STATEMENT)) deleted += await this.deleteRows(manager, unitId, chunk);
      if (deleted !== ids.length) throw new AlreadyRecovered();
    };
    const store = async (manager: EntityManager): Promise<void> => {
      outcome = 'stored';
      await deleteAll(manager, own);
      // Rows of that file's other connection that earlier tries marked: their markers go with them.
      if (elsewhere.length === 0 && folded.size && staleMarkers.length) {
        for (const chunk of chunks(staleMarkers, IDS_PER_STATEMENT)) await manager.createQueryBuilder().delete().from(AuditJournalEntity).where({ id: In(chunk) }).callListeners(false).execute();
      }
      if (recheck.length) {
        const stored = await this.storedSince(manager, unitId, recheck);
        // All stored, but rows in another database too, which that recovery did not store with them: the next pass sorts them out.
        if (stored === 'some' || (stored === 'all' && elsewhere.length > 0)) throw new AlreadyRecovered();
        if (stored === 'all') {
          outcome = 'marked';
          return;
        }
      }
      if (elsewhere.length && markers.length) {
        const repository = manager.getRepository(AuditJournalEntity);
        let found = 0;
        for (const chunk of chunks(markers, IDS_PER_STATEMENT)) found += await repository.count({ where: { unitId, id: In(chunk) } });
        if (found === markers.length) {
          outcome = 'marked';
          return;
        }
        // Part of the rows recovered elsewhere: nothing here is right to store (the caller reads the rows again).
        if (found > 0) throw new AlreadyRecovered();
        const createdAt = new Date();
        for (const chunk of chunks(markers, MARKERS_PER_STATEMENT)) {
          await manager
            .createQueryBuilder()
            .insert()
            .into(AuditJournalEntity)
            .values(chunk.map((id) => ({ id, unitId, instanceId: id, createdAt, entry: { ...MARKER_ENTRY, changes: [] } })))
            .callListeners(false)
            .execute();
        }
      }
      await this.writer.write(events, { manager });
    };
    // On MySQL and MariaDB at READ COMMITTED (see readCommittedTransaction): the DELETEs lock
    // the unit's rows, and no other unit's rows or the gaps that their INSERTs go into.
    const nest = (index: number): Promise<void> => {
      const next = elsewhere[index];
      if (!next) return readCommittedTransaction(this.dataSource, store);
      return readCommittedTransaction(next[0], async (manager: EntityManager) => {
        await deleteAll(manager, next[1]);
        await nest(index + 1);
      });
    };
    try {
      // Lost to another transaction (deadlock, lock timeout): every transaction of it has rolled back, and it runs again.
      await retryTransient(() => nest(0));
    } catch (error) {
      if (error instanceof AlreadyRecovered) return 'gone';
      throw error;
    }
    if (elsewhere.length && markers.length + staleMarkers.length > 0) {
      try {
        await this.deleteMarkers(unitId, [...markers, ...staleMarkers]);
      } catch (error) {
        this.logger.warn(`Audit: a journal marker was not deleted (recovery will): ${(error as Error).message}`);
      }
    }
    return outcome;
  }

  /** Deletes markers `ids` of unit `unitId` from the audit data source's journal, once their unit's stores have committed. */
  private deleteMarkers(unitId: string, ids: readonly string[]): Promise<void> {
    return retryTransient(() =>
      readCommittedTransaction(this.dataSource, async (manager) => {
        for (const chunk of chunks(ids, IDS_PER_STATEMENT)) await this.deleteRows(manager, unitId, chunk);
      }),
    );
  }

  /**
   * In the transaction that has just deleted `rowIds` from the audit data source's journal
   * (rows another data source's journal holds too, two data sources on one database): did a
   * unit store their events since they were read? Its store commits their markers while its
   * own transaction holds the rows (deleted, not committed); if that transaction then rolls
   * back, the rows are back and this DELETE, which waited on them, takes them. The unit's
   * marker, or every row's, says `all` (the row markers found are deleted here, with the
   * rows; the unit's stays, for its rows in other journals); some rows' markers, `some`
   * (part of the rows stored elsewhere: the next pass reads them with their markers);
   * none, `none`.
   * Markers committed before the DELETE returned are seen: PostgreSQL reads each
   * statement's committed rows; MySQL and MariaDB, by a locking read (a plain one reads the
   * rows committed before it at READ COMMITTED, the transaction's level, but the snapshot
   * of the transaction's first plain read where the server refused that level, which may
   * be older than the marker); SQLite has one writer, which this transaction now is. The
   * markers are the unit's rows (their unit id is the unit's): on MySQL and MariaDB the
   * read goes through the unit id index, and locks none of other units' rows.
   */
  private async storedSince(manager: EntityManager, unitId: string, rowIds: readonly string[]): Promise<'all' | 'some' | 'none'> {
    const markers = [unitId, ...rowIds.map(rowMarkerId)];
    const found = new Set<string>();
    for (const chunk of chunks(markers, IDS_PER_STATEMENT)) {
      for (const id of await this.lockedRows(manager, unitId, chunk)) found.add(id);
    }
    if (found.has(unitId)) return 'all';
    if (found.size === 0) return 'none';
    if (found.size < rowIds.length) return 'some';
    for (const chunk of chunks([...found], IDS_PER_STATEMENT)) await this.deleteRows(manager, unitId, chunk);
    return 'all';
  }

  /**
   * The journal's unit id index in `dataSource`, which {@link deleteRows} and
   * {@link lockedRows} name on MySQL and MariaDB (until the table turns out to lack it).
   */
  private journalIndex(dataSource: DataSource): JournalIndex {
    let index = this.journalIndexes.get(dataSource);
    if (!index) this.journalIndexes.set(dataSource, (index = new JournalIndex(dataSource)));
    return index;
  }

  /**
   * Deletes those of the journal rows `ids` that are there, rows of unit `unitId`, in
   * `manager`'s transaction; returns how many it deleted. On MySQL and MariaDB through the
   * unit id index: without it a DELETE by id was planned as a scan of a small journal,
   * which locks every row it reads (other units' rows being stored, and, at REPEATABLE
   * READ, the gaps that their INSERTs go into: two units deadlocked).
   */
  private async deleteRows(manager: EntityManager, unitId: string, ids: readonly string[]): Promise<number> {
    const index = this.journalIndex(manager.connection);
    if (!index.named) return (await manager.createQueryBuilder().delete().from(AuditJournalEntity).where({ unitId, id: In(ids) }).callListeners(false).execute()).affected ?? 0;
    const { head, column } = index.deleteWhere();
    const sql = `${head}${column('unitId')} = ? AND ${column('id')} IN (${ids.map(() => '?').join(', ')})`;
    try {
      return ((await manager.query(sql, ownStatement([unitId, ...ids]))) as { affectedRows: number }).affectedRows;
    } catch (error) {
      // A journal table made without the index: refused before anything was done, the transaction goes on.
      if (!index.refused(error)) throw error;
      index.drop();
      return this.deleteRows(manager, unitId, ids);
    }
  }

  /**
   * Those of the journal rows `ids` (rows of unit `unitId`) that are there, read in
   * `manager`'s transaction and share-locked where the database can (`FOR SHARE`, `LOCK IN
   * SHARE MODE`; SQLite has one writer); on MySQL and MariaDB through the unit id index.
   */
  private async lockedRows(manager: EntityManager, unitId: string, ids: readonly string[]): Promise<string[]> {
    const index = this.journalIndex(manager.connection);
    if (!index.named) {
      const qb = manager
        .getRepository(AuditJournalEntity)
        .createQueryBuilder('j')
        .select('j.id', 'id')
        .where('j.unitId = :unitId AND j.id IN (:...ids)', { unitId, ids });
      if (SHARE_LOCKING.has(manager.connection.options.type)) qb.setLock('pessimistic_read');
      return (await qb.getRawMany<{ id: string }>()).map((row) => row.id);
    }
    const metadata = manager.connection.getMetadata(AuditJournalEntity);
    const column = (propertyName: keyof AuditJournalEntity): string => `j.${manager.connection.driver.escape(metadata.findColumnWithPropertyName(propertyName)!.databaseName)}`;
    const sql =
      `SELECT ${column('id')} AS id FROM ${escapedTable(manager.connection, metadata)} AS j${index.hint()} ` +
      `WHERE ${column('unitId')} = ? AND ${column('id')} IN (${ids.map(() => '?').join(', ')}) LOCK IN SHARE MODE`;
    try {
      return ((await manager.query(sql, ownStatement([unitId, ...ids]))) as Array<{ id: string }>).map((row) => row.id);
    } catch (error) {
      if (!index.refused(error)) throw error;
      index.drop();
      return this.lockedRows(manager, unitId, ids);
    }
  }

  /** The events of a unit known only from its journal rows. */
  private eventsOf(rows: AuditJournalEntity[]): AuditLogEntity[] {
    const last = rows[rows.length - 1]!.entry;
    const actor = last.actor ? actorFromJournal(last.actor) : { type: 'unknown' };
    const unit = new UnitOfWork(
      { source: last.source, request: last.request, actor },
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
    return this.events.build(unit, actor);
  }

  /** A time as `dataSource`'s driver stores it in the journal's date columns. */
  private dateParam(dataSource: DataSource, date: Date): unknown {
    const column = dataSource.getMetadata(AuditJournalEntity).findColumnWithPropertyName('createdAt')!;
    return dataSource.driver.preparePersistentValue(date, column);
  }
}

class AlreadyRecovered extends Error {}

/**
 * The id of the marker of journal row `rowId` (in the audit data source's journal): a
 * UUID derived from the row's id (hashed, laid out as a version 4 UUID, which every
 * database's uuid type takes), which never equals a row's (UUID version 7) id.
 */
export function rowMarkerId(rowId: string): string {
  const hex = createHash('sha256').update(`nestjs-system-audit journal marker ${rowId}`).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** What `replace` did: stored the events, found them stored already (`marked`), or found rows gone. */
export type ReplaceOutcome = 'stored' | 'marked' | 'gone';

/**
 * Ids per statement of the journal's reads and deletes, and marker rows per INSERT (five
 * parameters each): a unit past its memory bound may have thousands of journal rows, more
 * than a statement takes parameters (SQLite 32,766, PostgreSQL 65,535).
 */
const IDS_PER_STATEMENT = 500;
const MARKERS_PER_STATEMENT = 200;
/** Drivers whose read of committed markers in a transaction (see `storedSince`) is a locking one (`FOR SHARE`, `LOCK IN SHARE MODE`). */
const SHARE_LOCKING: ReadonlySet<string> = new Set(['postgres', 'aurora-postgres', 'cockroachdb', 'mysql', 'mariadb', 'aurora-mysql']);

/**
 * Whether two data sources are connections to one SQLite database file (not `:memory:`,
 * which each connection has of its own), however each names it: a relative path, a
 * symbolic or a hard link are the same file (its device and inode).
 */
function sameSqliteFile(a: DataSource, b: DataSource): boolean {
  if (!isSqlite(a) || !isSqlite(b)) return false;
  const fileOfA = sqliteFile(a);
  return fileOfA !== undefined && fileOfA === sqliteFile(b);
}

function sqliteFile(dataSource: DataSource): string | undefined {
  const database = (dataSource.options as { database?: unknown }).database;
  if (typeof database !== 'string' || database === '' || database === ':memory:') return undefined;
  try {
    const { dev, ino } = statSync(database);
    return `${dev}:${ino}`;
  } catch {
    // Not there (yet): by its path.
    return resolve(database);
  }
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let start = 0; start < items.length; start += size) out.push(items.slice(start, start + size));
  return out;
}

/** A journal entry's changes as captured changes. */
function capturedChanges(entry: JournalEntry): CapturedChange[] {
  return entry.changes.map(({ at, ...change }) => ({ ...change, at: new Date(at) }));
}

/** Whether `work` settles by `deadline` (ms since the epoch); it goes on either way. */
async function settledBy(work: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
    timer.unref();
  });
  try {
    return await Promise.race([work.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
