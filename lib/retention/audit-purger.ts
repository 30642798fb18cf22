import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { LessThanOrEqual, type DataSource, type EntityManager, type QueryRunner } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitEvents } from '../events/unit-events.js';
import { uuidv7 } from '../events/uuid-v7.js';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import type { AuditPurgeOptions, AuditPurgeResult } from '../interfaces/audit-service.interface.js';
import { openNote, parseCheckpoint, signNote } from '../integrity/checkpoint-note.js';
import { AuditIntegrator } from '../integrity/integrator.js';
import { integratorDialect, withIntegratorLock } from '../integrity/integrator-lock.js';
import { DatabaseLogSource, eventLeafHash } from '../integrity/database-log-source.js';
import type { AuditLogSourceLeaf } from '../integrity/log-verifier.js';
import { combineSubtrees } from '../integrity/merkle.js';
import { verifiersFor } from '../integrity/proofs.js';
import { formatPurgeRecord, PURGE_ACTION, readPurgeRecord } from '../integrity/purge-record.js';
import { TreeStore } from '../integrity/tree-store.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { withAuditPurge } from '../storage/append-only.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditSubjectEntity } from '../storage/audit-subject.entity.js';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { AuditWriter } from '../storage/audit.writer.js';
import { createAuditPartitions, DEFAULT_MONTHS_AHEAD, listAuditPartitions, LOCK_TRIES, LOCK_TRY_TIMEOUT, retryLockTimeouts, type AuditLogPartition } from '../storage/audit-partitions.js';
import { escapedTable, valuesTable } from '../storage/sql.js';
import { MYSQL_DRIVERS } from '../storage/drivers.js';
import { ownStatement } from '../capture/own-statements.js';
import { occurredAtCondition, occurredAtParam, parseIsoInstant } from '../read/audit-query.js';
import { driverErrorCode, LOCK_NOT_AVAILABLE } from '../storage/database-errors.js';
import { findQuietly } from '../storage/quiet-find.js';

const DEFAULT_BATCH = 5_000;
const MAX_BATCH = 20_000;
/** MySQL/MariaDB: events per DELETE of a batch (see `deleteEvents`). */
const IDS_PER_DELETE = 1_000;
const LOCK_WAIT_MS = 30_000;
/** `audit.purged` events read at a time while looking for the last valid purge record. */
const RECORD_PAGE = 50;
/** The first scheduled purge runs this soon after start-up at the latest. */
const FIRST_RUN_MS = 10_000;
/** The longest a Node timer waits (a longer delay fires after 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;
/** How often the next months' partitions of a partitioned `audit_log` are created. */
const PARTITION_MAINTENANCE_MS = 24 * 60 * 60 * 1000;
/** The longest the module waits to read the partitions' bounds (each partition's lock). */
const PARTITION_LIST_WAIT = '5s';
const POSTGRES = new Set(['postgres', 'aurora-postgres']);
/** Distinct warnings remembered (each logged once). */
const MAX_WARNINGS = 100;
/** What a purge removes: events up to a `seq` (integrity on), or older than a time. */
type Scope = { throughSeq: number } | { before: Date };

/** The first event a purge with integrity on cannot remove because its row does not match its signed leaf. */
type Unmatched = NonNullable<AuditPurgeResult['stoppedAt']>;

/**
 * The retention purge: removes old events in batches (one short transaction each, the
 * only path through the append-only guards), with `integrity` on as a prefix of the
 * sequence under a signed purge record, and records each purge as an `audit.purged`
 * event. Runs `retention` on its schedule.
 */
@Injectable()
export class AuditPurger implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly tree = new TreeStore();
  private chain: Promise<unknown> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private partitionTimer?: NodeJS.Timeout;
  private stopped = false;
  private running = false;
  /** Warnings already logged (each once per process). */
  private readonly warned = new Set<string>();

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    private readonly integrator: AuditIntegrator,
    private readonly writer: AuditWriter,
    private readonly events: UnitEvents,
    private readonly context: AuditContext,
    private readonly recorder: AuditRecorder,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.options.enabled) return;
    if (POSTGRES.has(String(this.dataSource.options.type))) {
      await this.maintainPartitions();
      const daily = (): void => {
        if (this.stopped) return;
        this.partitionTimer = setTimeout(() => void this.maintainPartitions().finally(daily), PARTITION_MAINTENANCE_MS);
        this.partitionTimer.unref();
      };
      daily();
    }
    const retention = this.options.retention;
    if (!retention) return;
    const loop = (delay: number): void =>
      this.after(delay, () => {
        void this.scheduled();
        loop(retention.schedule);
      });
    loop(Math.min(retention.schedule, FIRST_RUN_MS));
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.partitionTimer) clearTimeout(this.partitionTimer);
    this.timer = undefined;
    this.partitionTimer = undefined;
  }

  /** Logs `message` once per process (per distinct message; a bounded number of them). */
  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    if (this.warned.size >= MAX_WARNINGS) this.warned.clear();
    this.warned.add(message);
    this.logger.warn(message);
  }

  /**
   * When `audit_log` is partitioned by month (PostgreSQL): creates the partitions of the
   * next months that are missing. Needs the table's owner; otherwise says once what to do.
   */
  private async maintainPartitions(): Promise<void> {
    let partitions: AuditLogPartition[] | undefined | 'busy';
    try {
      const runner = this.dataSource.createQueryRunner();
      try {
        partitions = await this.listPartitions(runner);
      } finally {
        await runner.release();
      }
    } catch {
      return; // the database cannot be asked now (a purge would say so); nothing is known about partitions
    }
    if (partitions === 'busy') {
      this.warnOnce(`Audit partitions: a partition of audit_log stayed locked for ${PARTITION_LIST_WAIT} (VACUUM FULL, CLUSTER or REINDEX of it?): the next months' partitions are looked at again later`);
      return;
    }
    if (!partitions) return;
    try {
      const result = await createAuditPartitions(this.dataSource, { monthsAhead: DEFAULT_MONTHS_AHEAD });
      if (result.created.length) this.logger.log(`Audit partitions: created ${result.created.join(', ')}`);
      if (result.skipped.length) {
        this.warnOnce(
          `Audit partitions: no partition for ${result.skipped.join(', ')}: the default partition already holds events of those months (they stay there; a purge deletes them row by row)`,
        );
      }
    } catch (error) {
      this.warnOnce(
        `Audit partitions: the next months' partitions of audit_log could not be created (${(error as Error).message}); ` +
          "events of a month without one go to the default partition. When the application's role does not own audit_log, run createAuditPartitions() as the owner, e.g. monthly.",
      );
    }
  }

  /**
   * {@link listAuditPartitions}, waiting at most {@link PARTITION_LIST_WAIT} for the
   * partitions' locks (reading a partition's bounds locks it: a VACUUM FULL, CLUSTER or
   * REINDEX of one holds it for minutes); `'busy'` past it.
   */
  private async listPartitions(runner: QueryRunner): Promise<AuditLogPartition[] | undefined | 'busy'> {
    await runner.startTransaction();
    try {
      await runner.query(`SET LOCAL lock_timeout = '${PARTITION_LIST_WAIT}'`);
      const partitions = await listAuditPartitions(runner);
      await runner.commitTransaction();
      return partitions;
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      if (driverErrorCode(error) === LOCK_NOT_AVAILABLE) return 'busy';
      throw error;
    }
  }

  /** Calls `then` in `ms` milliseconds, in steps a Node timer can wait (a schedule may be longer). */
  private after(ms: number, then: () => void): void {
    if (this.stopped) return;
    const step = Math.min(ms, MAX_TIMER_MS);
    this.timer = setTimeout(() => (ms > step ? this.after(ms - step, then) : then()), step);
    this.timer.unref();
  }

  /** See `AuditService.purge()`. */
  purge(options: AuditPurgeOptions, actor?: AuditActor): Promise<AuditPurgeResult> {
    const { before, batchSize } = checkPurgeOptions(options);
    const next = this.chain.then(() => this.run(before, batchSize, actor));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async scheduled(): Promise<void> {
    const retention = this.options.retention;
    if (!retention || this.running) return;
    this.running = true;
    try {
      const result = await this.purge({ before: new Date(Date.now() - retention.maxAge) }, { type: 'system', id: 'retention' });
      if (result.deleted > 0) this.logger.log(`Audit retention: purged ${result.deleted} events older than ${result.before.toISOString()}`);
    } catch (error) {
      this.logger.error(`Audit retention: the purge failed, retrying in ${retention.schedule} ms: ${(error as Error).message}`);
    } finally {
      this.running = false;
    }
  }

  private async run(before: Date, batchSize: number, actor: AuditActor | undefined): Promise<AuditPurgeResult> {
    if (POSTGRES.has(String(this.dataSource.options.type))) await this.maintainPartitions();
    if (!this.options.integrity) {
      const scope: Scope = { before };
      const older = this.olderThan(before);
      const count = await this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where(older.where, older.parameters).getCount();
      if (count === 0) {
        await this.dropPartitions(before, undefined, batchSize, true); // months emptied earlier (only while still empty: nothing is recorded)
        return { deleted: 0, before };
      }
      const eventId = await this.record(this.dataSource.manager, { before: before.toISOString(), events: count }, actor);
      const dropped = await this.dropPartitions(before, undefined, batchSize);
      const deleted = dropped + (await this.deleteAll(scope, batchSize));
      return { deleted, before, eventId };
    }

    // Every stored event gets its seq and a checkpoint signs the tree over them first.
    await this.integrator.checkpoint();
    const previous = await this.lastPurge(this.dataSource.manager);
    const { through, unmatched } = await this.checkedBound(before, previous, await this.purgeBound(before, previous));
    let result: AuditPurgeResult = { deleted: 0, before };
    if (unmatched) {
      result.stoppedAt = unmatched;
      this.logger.error(
        `Audit retention: the purge stops before event ${unmatched.seq}${unmatched.id ? ` (${unmatched.id})` : ''}: ${unmatched.message}. ` +
          'It and the events after it stay until its row is restored as signed (verify() reports it)',
      );
    }
    if (through > previous) {
      const recorded = await this.recordSequencePurge(before, through, actor);
      if (recorded) {
        result = { ...result, eventId: recorded.eventId, throughSeq: through, record: recorded.note };
        await this.anchor(recorded.note, through, recorded.rootHash);
      }
    }
    // Also what an interrupted purge left (events at or below an earlier record).
    const last = Math.max(through, previous);
    if (last > 0) result.deleted = (await this.dropPartitions(before, last, batchSize)) + (await this.deleteAll({ throughSeq: last }, batchSize));
    if (result.throughSeq === undefined && last > 0 && result.deleted > 0) result.throughSeq = last;
    return result;
  }

  /**
   * The `seq` the last purge record reaches (0: none): among the newest `audit.purged`
   * events (by the action index, a page at a time), the largest whose note is a purge record
   * of this log — it opens with its keys, names its origin, and carries the stored tree's
   * right edge at its size. An event's
   * `throughSeq` alone is not trusted: anyone who can write an event could claim any.
   */
  private async lastPurge(manager: EntityManager): Promise<number> {
    const repository = manager.getRepository(AuditLogEntity);
    const lastSeq = await this.lastSeq(manager);
    for (let skip = 0; ; skip += RECORD_PAGE) {
      const rows = await findQuietly(repository, {
        select: { id: true, context: true },
        where: { action: PURGE_ACTION },
        order: { occurredAt: 'DESC', id: 'DESC' },
        skip,
        take: RECORD_PAGE,
      });
      // The largest record of the first page that has one: instances' clocks may differ by
      // seconds, so the newest by time is not always the one reaching furthest.
      let largest = 0;
      for (const row of rows) largest = Math.max(largest, await this.recordSize(manager, (row.context as { note?: unknown } | null | undefined)?.note, lastSeq));
      if (largest > 0 || rows.length < RECORD_PAGE) return largest;
    }
  }

  /** The size of `note` when it is a purge record of this log, whose sequence reaches `lastSeq` (0 otherwise). */
  private async recordSize(manager: EntityManager, note: unknown, lastSeq: number): Promise<number> {
    if (typeof note !== 'string') return 0;
    const integrity = this.options.integrity!;
    try {
      const checkpoint = parseCheckpoint(openNote(note, verifiersFor(note, integrity.publicKeys)).text);
      if (checkpoint.origin !== integrity.origin) return 0;
      const record = readPurgeRecord(checkpoint);
      if (!record) return 0;
      if (lastSeq < record.treeSize) return 0;
      const stored = await this.tree.frontier(manager, record.treeSize);
      return stored.length === record.frontier.length && stored.every((node, i) => node.hash.equals(record.frontier[i]!)) ? record.treeSize : 0;
    } catch {
      return 0;
    }
  }

  /**
   * The last `seq` to purge as the database compares times: the one before the first event
   * (after `previous`) that is not older than `before`; the last sequenced one when every
   * one is older. {@link checkedBound} then checks the rows up to it.
   */
  private async purgeBound(before: Date, previous: number): Promise<number> {
    const repository = this.dataSource.getRepository(AuditLogEntity);
    const param = occurredAtParam(this.dataSource, before, 'before');
    const kept = await repository
      .createQueryBuilder('e')
      .select('e.seq', 'seq')
      .where('e.seq > :previous', { previous })
      // On SQLite, a time it cannot read counts as not older (the rows are checked next anyway).
      .andWhere(this.sqlite() ? 'COALESCE(julianday(e.occurredAt) >= julianday(:before), 1) = 1' : 'e.occurredAt >= :before', { before: param })
      .orderBy('e.seq', 'ASC')
      .limit(1)
      .getRawOne<{ seq: string | number }>();
    return Math.max(previous, kept ? Number(kept.seq) - 1 : await this.lastSeq(this.dataSource.manager));
  }

  /**
   * `through` checked against the rows and the signed tree: the events after `previous` are
   * read in `seq` order, a page at a time, each hashed as the integrator hashed it
   * ({@link eventLeafHash}) and compared with its stored leaf. The purge reaches the one
   * before the first event that occurred at or after `before` (its time as read), or whose
   * row is missing, repeated, or does not match its leaf (`unmatched`): what is signed
   * about that event cannot be known from the row, and a purge record over it would hide
   * the change.
   */
  private async checkedBound(before: Date, previous: number, through: number): Promise<{ through: number; unmatched?: Unmatched }> {
    if (through <= previous) return { through };
    const source = new DatabaseLogSource(this.dataSource);
    const rows = source.eventRows(through, previous)[Symbol.asyncIterator]();
    const leaves = source.leaves(through, previous)[Symbol.asyncIterator]();
    try {
      let row = await rows.next();
      let leaf = await leaves.next();
      for (let seq = previous + 1; seq <= through; seq++) {
        const stored: AuditLogSourceLeaf | undefined = !leaf.done && leaf.value.index === seq - 1 ? leaf.value : undefined;
        const unmatched = (message: string, id = stored?.eventId ?? undefined): { through: number; unmatched: Unmatched } => ({
          through: seq - 1,
          unmatched: id === undefined ? { seq, message } : { seq, id, message },
        });
        if (row.done || row.value.row.seq !== seq) return unmatched(stored ? `its row is missing (its signed leaf remains)` : 'neither its row nor its leaf is stored');
        const { row: event, problem } = row.value;
        row = await rows.next();
        if (!row.done && row.value.row.seq === seq) return unmatched(`two rows have its seq (${event.id} and ${row.value.row.id})`, event.id);
        if (!stored) return unmatched('it has no leaf in the stored tree', event.id);
        if (stored.eventId !== event.id) return unmatched(`its leaf names event ${stored.eventId ?? 'none'}`, event.id);
        if (problem) return unmatched(`its stored JSON is not the text signed (${problem})`, event.id);
        if (!eventLeafHash(event).equals(stored.hash)) return unmatched('its row does not hash to its signed leaf (it was changed)', event.id);
        const at: unknown = event.occurredAt;
        if (!(at instanceof Date) || Number.isNaN(at.getTime()) || at.getTime() >= before.getTime()) return { through: seq - 1 };
        leaf = await leaves.next();
      }
      return { through };
    } finally {
      await rows.return(undefined);
      await leaves.return(undefined);
    }
  }

  /** Whether the data source is SQLite, whose date columns hold text (possibly with an offset). */
  private sqlite(): boolean {
    return integratorDialect(this.dataSource) === 'sqlite';
  }

  /** `e.occurredAt < before` comparing instants (on SQLite too, see `occurredAtCondition`). */
  private olderThan(before: Date): { where: string; parameters: Record<string, unknown> } {
    return occurredAtCondition(this.dataSource, '<', before, 'before');
  }

  /** The largest `seq` given (0: none). */
  private async lastSeq(manager: EntityManager): Promise<number> {
    const last = await manager.getRepository(AuditLogEntity).createQueryBuilder('e').select('MAX(e.seq)', 'seq').getRawOne<{ seq: string | number | null }>();
    return last?.seq === null || last?.seq === undefined ? 0 : Number(last.seq);
  }

  /**
   * Signs the purge record of events 1 to `through` and stores its `audit.purged` event, in
   * one transaction under the integrator's lock (no record when another instance's already
   * reaches as far).
   */
  private async recordSequencePurge(
    before: Date,
    through: number,
    actor: AuditActor | undefined,
  ): Promise<{ eventId: string; note: string; rootHash: Buffer } | undefined> {
    const integrity = this.options.integrity!;
    const work = async (manager: EntityManager): Promise<{ eventId: string; note: string; rootHash: Buffer } | undefined> => {
      const previous = await this.lastPurge(manager);
      if (previous >= through) return undefined;
      const events = await manager.getRepository(AuditLogEntity).count({ where: { seq: LessThanOrEqual(through) } });
      const frontier = (await this.tree.frontier(manager, through)).map((node) => node.hash);
      const note = signNote(formatPurgeRecord(integrity.origin, { treeSize: through, before: before.toISOString(), frontier }), integrity.signer);
      const context = { before: before.toISOString(), fromSeq: previous + 1, throughSeq: through, events, note };
      const eventId = await this.record(manager, context, actor);
      return { eventId, note, rootHash: combineSubtrees(frontier) };
    };
    if (integratorDialect(this.dataSource) === 'sqlite') return this.dataSource.transaction((manager) => work(manager));
    const outcome = await withIntegratorLock(this.dataSource, LOCK_WAIT_MS, (manager) => work(manager));
    if (outcome.busy) throw new AuditIntegrityError(`another instance held the integrator lock for ${LOCK_WAIT_MS} ms; the purge recorded nothing`);
    return outcome.value;
  }

  private async anchor(note: string, treeSize: number, rootHash: Buffer): Promise<void> {
    const anchor = this.options.integrity?.anchor;
    if (!anchor) return;
    try {
      await anchor({ treeSize, rootHash: rootHash.toString('base64'), note });
    } catch (error) {
      this.logger.error(`Audit integrity: anchoring the purge record of events 1 to ${treeSize} failed: ${(error as Error).message}`);
    }
  }

  /** Stores the purge's `audit.purged` event with `manager`, as the current unit's actor (else `actor`, else the system). */
  private async record(manager: EntityManager, context: Record<string, unknown>, actor: AuditActor | undefined): Promise<string> {
    const unit = this.context.current();
    const live = unit?.isLive ? unit : undefined;
    const who = actor ?? (live ? await this.recorder.resolveActor(live) : { type: 'system' });
    const at = Date.now();
    const intent = { id: uuidv7(at), occurredAt: new Date(at), action: PURGE_ACTION, outcome: 'success' as const, actor: who, context, claim: 'none' as const };
    const rows = this.events.intentEvents(intent, live, who);
    const stored = rows[0]?.context as Record<string, unknown> | null | undefined;
    if (rows.length !== 1 || (context['note'] !== undefined && stored?.['note'] !== context['note'])) {
      throw new AuditIntegrityError(
        `the purge record does not fit in an event's context (maxContextBytes is ${this.options.maxContextBytes}; it needs about ${JSON.stringify(context).length + 512} bytes)`,
      );
    }
    await this.writer.write(rows, { manager });
    return intent.id;
  }

  /**
   * When `audit_log` is partitioned by month (PostgreSQL): drops each partition whose
   * month ends at or before `before` and, with integrity on, whose events all have a `seq`
   * up to `throughSeq` and their leaf in the tree: exactly the rows the purge removes,
   * without deleting them one by one (`onlyEmpty`: only partitions without a row). Returns
   * how many events went. One instance drops at a time (another's purge meanwhile deletes
   * rows instead of waiting); a partition the role cannot drop, or whose lock is not had
   * in five short tries (writers held up a second in all at most), is left to the row
   * deletes, and so is every later one of this purge once a lock was not had.
   */
  private async dropPartitions(before: Date, throughSeq: number | undefined, batchSize: number, onlyEmpty = false): Promise<number> {
    if (!POSTGRES.has(String(this.dataSource.options.type))) return 0;
    const runner = this.dataSource.createQueryRunner();
    const lock = `nestjs-system-audit drops ${this.logTable()}`;
    let locked = false;
    try {
      const listed = await this.listPartitions(runner);
      if (listed === 'busy') {
        this.logger.warn(`Audit retention: a partition of audit_log stayed locked for ${PARTITION_LIST_WAIT}: no month partition is dropped by this purge; it deletes their rows instead`);
        return 0;
      }
      const partitions = listed?.filter((partition) => partition.to && partition.to.getTime() <= before.getTime());
      if (!partitions?.length) return 0;
      // One instance drops at a time; while another does, this purge deletes rows instead of waiting.
      const [got] = (await runner.query('SELECT pg_try_advisory_lock(hashtext($1)) AS got', [lock])) as Array<{ got: boolean }>;
      if (!got!.got) return 0;
      locked = true;
      let deleted = 0;
      for (const partition of partitions) {
        const dropped = await this.dropPartition(runner, partition, throughSeq, batchSize, onlyEmpty);
        if (dropped === 'busy') break;
        deleted += dropped;
      }
      return deleted;
    } finally {
      if (locked) await runner.query('SELECT pg_advisory_unlock(hashtext($1))', [lock]).catch(() => undefined);
      await runner.release();
    }
  }

  /** `audit_log`, qualified and quoted for SQL. */
  private logTable(): string {
    return escapedTable(this.dataSource, this.dataSource.getMetadata(AuditLogEntity));
  }

  private async dropPartition(
    runner: QueryRunner,
    partition: AuditLogPartition,
    throughSeq: number | undefined,
    batchSize: number,
    onlyEmpty: boolean,
  ): Promise<number | 'busy'> {
    const escape = (name: string): string => this.dataSource.driver.escape(name);
    const [seq, id] = [escape('seq'), escape('id')];
    const tree = escapedTable(this.dataSource, this.dataSource.getMetadata(AuditTreeEntity));
    try {
      const [role] = (await runner.query(`SELECT pg_has_role(current_user, $1, 'USAGE') AS owner, current_user AS name`, [partition.owner])) as Array<{
        owner: boolean;
        name: string;
      }>;
      if (!role!.owner) {
        this.warnOnce(`Audit retention: role ${role!.name} does not own the partitions of audit_log (${partition.owner} does): the purge deletes their rows instead of dropping them`);
        return 0;
      }
      const count = async (): Promise<number> => Number(((await runner.query(`SELECT count(*) AS n FROM ${partition.table}`)) as Array<{ n: string }>)[0]!.n);
      /** An event the purge does not remove: not sequenced, past its record, or (`leaf`) without its leaf in the tree (a seq set by hand). */
      const kept = async (leaf: boolean): Promise<boolean> =>
        throughSeq !== undefined &&
        ((await runner.query(
          `SELECT EXISTS (SELECT 1 FROM ${partition.table} e WHERE e.${seq} IS NULL OR e.${seq} > $1` +
            (leaf ? ` OR NOT EXISTS (SELECT 1 FROM ${tree} t WHERE t.level = 0 AND t.idx = e.${seq} - 1 AND t.event_id = e.${id})` : '') +
            ') AS kept',
          [String(throughSeq)],
        )) as Array<{ kept: boolean }>)[0]!.kept;
      const rows = await count();
      if (onlyEmpty ? rows > 0 : await kept(true)) return 0;
      // The subject rows of the events the purge removes whether the drop happens or not (an
      // event that comes in meanwhile changes the count: the drop is then left to the row deletes).
      const inScope = throughSeq === undefined ? [] : [`${seq} <= ${Number(throughSeq)}`];
      for (let after: string | undefined; rows > 0; ) {
        const where = after === undefined ? inScope : [...inScope, `${id} > $2`];
        const ids = (
          (await runner.query(
            `SELECT ${id} AS id FROM ${partition.table}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${id} LIMIT $1`,
            after === undefined ? [batchSize] : [batchSize, after],
          )) as Array<{ id: string }>
        ).map((row) => row.id);
        if (ids.length) await runner.manager.createQueryBuilder().delete().from(AuditSubjectEntity).where('eventId IN (:...ids)', { ids }).callListeners(false).execute();
        if (ids.length < batchSize) break;
        after = ids[ids.length - 1];
      }
      // The drop, once no event came in meanwhile (the count holds the lock for as long as one index scan of the month).
      const drop = async (): Promise<number> => {
        await runner.startTransaction();
        try {
          await runner.query(`SET LOCAL lock_timeout = '${LOCK_TRY_TIMEOUT}'`);
          const log = this.logTable();
          await runner.query(`LOCK TABLE ${log} IN ACCESS EXCLUSIVE MODE`);
          // Still a partition of audit_log (an administrator may have detached it meanwhile, to archive it), with the rows counted.
          const [still] = (await runner.query(`SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = $1::regclass AND inhparent = $2::regclass) AS still`, [
            partition.table,
            log,
          ])) as Array<{ still: boolean }>;
          if (!still!.still || (await count()) !== rows || (await kept(false))) {
            await runner.rollbackTransaction();
            return 0;
          }
          await runner.query(`DROP TABLE ${partition.table}`);
          await runner.commitTransaction();
          return rows;
        } finally {
          if (runner.isTransactionActive) await runner.rollbackTransaction();
        }
      };
      return await retryLockTimeouts(drop);
    } catch (error) {
      const code = driverErrorCode(error);
      if (code === '42P01') return 0; // dropped meanwhile (an administrator)
      if (code === LOCK_NOT_AVAILABLE) {
        this.logger.warn(
          `Audit retention: audit_log stayed locked (${LOCK_TRIES} tries of ${LOCK_TRY_TIMEOUT}; a long read or write): no month partition is dropped by this purge; it deletes their rows instead`,
        );
        return 'busy';
      }
      if (code === '42501') {
        this.warnOnce(`Audit retention: partition ${partition.name} cannot be dropped (${(error as Error).message}); the purge deletes its rows instead`);
        return 0;
      }
      throw error;
    }
  }

  /**
   * Deletes the events in `scope` (and their subject rows), a batch per transaction; counts
   * the rows this purge removed (another instance purging at once may take some first).
   */
  private async deleteAll(scope: Scope, batchSize: number): Promise<number> {
    let deleted = 0;
    /** The largest seq looked at (an event left for not being in the tree is stepped over). */
    let after = 0;
    for (;;) {
      const runner = this.dataSource.createQueryRunner();
      await runner.connect();
      try {
        const batch = await withAuditPurge(runner, async (queryRunner) => {
          const manager = queryRunner.manager;
          const query = manager.getRepository(AuditLogEntity).createQueryBuilder('e').select('e.id', 'id').addSelect('e.seq', 'seq');
          if ('throughSeq' in scope) query.where('e.seq > :after AND e.seq <= :through', { after, through: scope.throughSeq }).orderBy('e.seq', 'ASC');
          else {
            const older = this.olderThan(scope.before);
            query.where(older.where, older.parameters).orderBy('e.occurredAt', 'ASC').addOrderBy('e.id', 'ASC');
          }
          const rows = await query.limit(batchSize).getRawMany<{ id: string; seq: string | number | null }>();
          if (rows.length === 0) return { selected: 0, removed: 0 };
          let ids = rows.map((row) => row.id);
          if ('throughSeq' in scope) {
            // Only events whose leaf is in the tree (read by the tree's key over the batch's seq range): an
            // event given a purged seq by hand stays, and verify() reports it.
            const seqs = rows.map((row) => Number(row.seq));
            after = seqs[seqs.length - 1]!;
            const leaves = await manager
              .getRepository(AuditTreeEntity)
              .createQueryBuilder('t')
              .select('t.index', 'idx')
              .addSelect('t.eventId', 'eventId')
              .where('t.level = 0 AND t.index >= :low AND t.index <= :high', { low: seqs[0]! - 1, high: after - 1 })
              .getRawMany<{ idx: string | number; eventId: string | null }>();
            const leafOf = new Map(leaves.map((leaf) => [Number(leaf.idx), leaf.eventId]));
            ids = rows.filter((row, i) => leafOf.get(seqs[i]! - 1) === row.id).map((row) => row.id);
            if (ids.length === 0) return { selected: rows.length, removed: 0 };
          }
          return { selected: rows.length, removed: await this.deleteEvents(manager, ids) };
        });
        deleted += batch.removed;
        if (batch.selected < batchSize) return deleted;
      } finally {
        await runner.release();
      }
    }
  }

  /**
   * Deletes the events `ids` and their subject rows in `manager`'s transaction; returns how
   * many events it deleted. On MySQL and MariaDB the ids are joined to each table through
   * its index on the event id, one lookup per event ({@link valuesTable}): `id IN (…)` was
   * read as a scan of the whole table whenever the batch was a fifth of the log or more,
   * and the scanning DELETE, locking every row it read, waited for the events requests were
   * storing meanwhile, and held up their inserts until the batch committed.
   */
  private async deleteEvents(manager: EntityManager, ids: readonly string[]): Promise<number> {
    if (!MYSQL_DRIVERS.has(String(this.dataSource.options.type))) {
      await manager.createQueryBuilder().delete().from(AuditSubjectEntity).where('eventId IN (:...ids)', { ids }).callListeners(false).execute();
      const { affected } = await manager.createQueryBuilder().delete().from(AuditLogEntity).where('id IN (:...ids)', { ids }).callListeners(false).execute();
      return affected ?? ids.length;
    }
    const driver = this.dataSource.driver;
    const subjects = this.dataSource.getMetadata(AuditSubjectEntity);
    const log = this.dataSource.getMetadata(AuditLogEntity);
    const eventId = driver.escape(subjects.findColumnWithPropertyName('eventId')!.databaseName);
    const id = driver.escape(log.findColumnWithPropertyName('id')!.databaseName);
    let deleted = 0;
    for (let from = 0; from < ids.length; from += IDS_PER_DELETE) {
      const chunk = ids.slice(from, from + IDS_PER_DELETE);
      const keys = valuesTable(chunk.length, ['u'], 'k');
      await manager.query(`DELETE s FROM ${keys} STRAIGHT_JOIN ${escapedTable(this.dataSource, subjects)} AS s ON s.${eventId} = k.u`, ownStatement(chunk));
      const result = (await manager.query(`DELETE e FROM ${keys} STRAIGHT_JOIN ${escapedTable(this.dataSource, log)} AS e FORCE INDEX (PRIMARY) ON e.${id} = k.u`, ownStatement(chunk))) as {
        affectedRows: number;
      };
      deleted += result.affectedRows;
    }
    return deleted;
  }
}

/**
 * Checks `purge()`'s options.
 * @throws InvalidAuditQueryError naming the bad option.
 */
function checkPurgeOptions(options: AuditPurgeOptions): { before: Date; batchSize: number } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidAuditQueryError('options', 'must be an object such as { before: new Date("2026-01-01") }');
  }
  for (const key of Object.keys(options)) {
    if (key !== 'before' && key !== 'batchSize') throw new InvalidAuditQueryError(key, 'is not an option of purge() (known: before, batchSize)');
  }
  const raw: unknown = options.before;
  if (raw === undefined) throw new InvalidAuditQueryError('before', 'is required: the events older than this time are purged');
  // Text is read as find() reads it: ISO 8601, a time without a zone in UTC, a day off the calendar refused.
  const before = raw instanceof Date ? raw : typeof raw === 'string' ? (parseIsoInstant(raw) ?? new Date(Number.NaN)) : new Date(Number.NaN);
  if (Number.isNaN(before.getTime())) {
    throw new InvalidAuditQueryError('before', `is not a valid date (a Date, or ISO 8601 text such as "2026-01-31" or "2026-01-31T12:00:00Z"): ${JSON.stringify(raw)}`);
  }
  if (before.getTime() > Date.now()) {
    throw new InvalidAuditQueryError('before', `is in the future (${before.toISOString()}): a purge removes only events older than a past time`);
  }
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
    throw new InvalidAuditQueryError('batchSize', `must be a whole number from 1 to ${MAX_BATCH}, got ${JSON.stringify(batchSize)}`);
  }
  return { before, batchSize };
}
