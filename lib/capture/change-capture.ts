import { classifyDatabaseError } from '../storage/database-errors.js';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DataSource, EntityManager, EntityMetadata, QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWork, type PendingIntent } from '../context/unit-of-work.js';
import { AuditJournal } from '../journal/audit-journal.js';
import { takeUnsent } from '../integrations/typeorm-commit-statements.js';
import { ownStatement } from './own-statements.js';
import { UnitEvents } from '../events/unit-events.js';
import { excludedFields, isExcludedEntity } from '../decorators/audit-exclude.decorator.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import type { AuditEntityRef } from '../interfaces/audit-module-options.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { AuditEntities } from '../storage/audit-entities.js';

const AUDIT_ENTITIES: ReadonlySet<unknown> = new Set(AuditEntities);
import { AuditDataSources } from './audit-data-sources.js';
import { ChangeSet, type CapturedChange } from './change-set.js';
import { TrackedFields } from './entity-snapshot.js';
import { isSqlite } from '../storage/drivers.js';
import { onHeldOrOwnRunner, onHeldRunner } from '../storage/own-runner.js';
import { heldElsewhere } from './runner-turn.js';
import { isOwnStatement } from './own-statements.js';
import { transactionEnd, type TransactionDialect, type TransactionEnd } from './raw-statement.js';
import { MYSQL_DRIVERS } from '../storage/drivers.js';

/** The database `transactionEnd` reads a data source's statements as, if it is one it knows. */
function transactionDialect(dataSource: DataSource): TransactionDialect | undefined {
  const type = String(dataSource.driver.options.type);
  if (type === 'postgres') return 'postgres';
  if (MYSQL_DRIVERS.has(type)) return 'mysql';
  return isSqlite(dataSource) ? 'sqlite' : undefined;
}

/** One transaction level: its changes per unit of work (`null`: outside any), and the journal rows written for them at the commit. */
interface Frame {
  changes: Map<UnitOfWork | null, ChangeSet>;
  /** Journal rows written at the commit for changes the unit keeps in memory. */
  journalRows: Map<UnitOfWork, string[]>;
  /** Journal rows written for changes the unit does not keep in memory (too many of them). */
  spilled: Map<UnitOfWork, string[]>;
  /** Events of `log()` calls made in the transaction outside a live unit: with no unit (`null`), or as late work (its late unit). */
  intents: Array<{ intent: PendingIntent; unit: UnitOfWork | null }>;
  /**
   * In a data source other than the audit one: units of their own that carry changes no
   * live unit claims (and `log()` events) through the journal, stored once committed.
   */
  carried: Array<{ unit: UnitOfWork; ids: string[] }>;
  /** Set once the journal rows are written at the outermost commit: the COMMIT is being sent. */
  committing: boolean;
  /**
   * The COMMIT was answered with an error by a server still connected (a serialization
   * failure, a deferred constraint): the transaction did not commit.
   */
  commitRefused?: boolean;
  /** Set when they were written before a statement of the app's that commits (see {@link ChangeCapture.endingByHand}). */
  byHand?: boolean;
  /**
   * A level the app opened with a raw `SAVEPOINT` statement: the savepoint's name as its
   * database compares it (see {@link ChangeCapture.savepointSet}). Never the outermost level.
   */
  savepoint?: string;
}

const newFrame = (savepoint?: string): Frame => ({
  changes: new Map(),
  journalRows: new Map(),
  spilled: new Map(),
  intents: [],
  carried: [],
  committing: false,
  ...(savepoint === undefined ? {} : { savepoint }),
});

/** Hands the changes of a level that committed (a savepoint released) up to the level around it, after its own. */
function absorbFrame(parent: Frame, frame: Frame): void {
  for (const [unit, set] of frame.changes) {
    let target = parent.changes.get(unit);
    if (!target) parent.changes.set(unit, (target = new ChangeSet()));
    target.absorb(set);
  }
  for (const [unit, rows] of frame.spilled) add(parent.spilled, unit, rows);
  // `log()` events of a savepoint that committed ride on the outer transaction's COMMIT.
  parent.intents.push(...frame.intents);
}

/**
 * Ends the levels of raw savepoints above the innermost level TypeORM (or the module)
 * opened, as its COMMIT or RELEASE (`keep`), or its ROLLBACK, ends them in the database.
 */
function settleSavepoints(stack: Frame[], keep: boolean): void {
  while (stack.length > 1 && stack[stack.length - 1]!.savepoint !== undefined) {
    const frame = stack.pop()!;
    if (keep) absorbFrame(stack[stack.length - 1]!, frame);
  }
}

/**
 * Whether `error` is the database server's answer to a statement, on a connection still
 * up: PostgreSQL's error response (a SQLSTATE with its severity), a MySQL/MariaDB error
 * packet (an errno and SQLSTATE, not fatal) — and not one of the states that mean the
 * connection is going (`classifyDatabaseError`'s `connection`). A client-side error (a
 * driver's read timeout, a socket closed) says nothing of what the server did.
 */
function serverRefused(error: unknown): boolean {
  if (classifyDatabaseError(error) === 'connection') return false;
  const seen = new Set<unknown>();
  for (let node: unknown = error; typeof node === 'object' && node !== null && !seen.has(node); ) {
    seen.add(node);
    const record = node as Record<string, unknown>;
    const code = record['code'];
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof record['severity'] === 'string') return true;
    if (typeof record['errno'] === 'number' && typeof record['sqlState'] === 'string' && record['fatal'] !== true) return true;
    node = record['driverError'] ?? record['cause'];
  }
  return false;
}

const add = <K>(map: Map<K, string[]>, key: K, ids: readonly string[]): void => {
  if (ids.length) map.set(key, [...(map.get(key) ?? []), ...ids]);
};

/** The index of the innermost level of a raw savepoint named `name` in `stack`, or -1. */
function savepointIndex(stack: readonly Frame[], name: string): number {
  for (let index = stack.length - 1; index > 0; index--) if (stack[index]!.savepoint === name) return index;
  return -1;
}

/**
 * Where captured changes go. Inside a transaction: into a frame per transaction level,
 * merged upwards on commit and dropped on rollback. At the outermost commit, inside the
 * transaction, a live unit's changes are written to the journal (and handed to the unit
 * once committed; the unit settles only after every transaction holding its changes has
 * ended), and changes that belong to no live unit are written to `audit_log` as fallback
 * events, so they commit and roll back with the change. Outside a transaction: into the
 * current unit (and the journal, right after the write), or straight into `audit_log`.
 */
@Injectable()
export class ChangeCapture {
  private readonly logger = new Logger('Audit');
  private readonly frames = new WeakMap<QueryRunner, Frame[]>();
  private readonly fields = new WeakMap<EntityMetadata, TrackedFields | null>();
  /** Live units whose changes an open transaction holds: they settle after it ends. */
  private readonly holders = new WeakMap<QueryRunner, Set<UnitOfWork>>();

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly dataSources: AuditDataSources,
    private readonly context: AuditContext,
    private readonly recorder: AuditRecorder,
    private readonly builder: AuditEventBuilder,
    private readonly journal: AuditJournal,
    private readonly events: UnitEvents,
  ) {}

  /** Changes a unit keeps in memory, at most, before they go to the journal only. */
  private get spillAt(): number {
    return this.options.maxChangesPerEvent * 5;
  }

  get maxCriteriaRows(): number {
    return this.options.maxCriteriaRows;
  }

  /** The fields followed for an entity, or `null` when the entity is not captured at all. */
  trackedFields(metadata: EntityMetadata): TrackedFields | null {
    let tracked = this.fields.get(metadata);
    if (tracked === undefined) {
      tracked = this.isCaptured(metadata)
        ? new TrackedFields(
            metadata,
            new Set([...excludedFields(metadata.target), ...(this.options.excludeFields.get(metadata.name) ?? [])]),
            this.options.secretKeys,
          )
        : null;
      this.fields.set(metadata, tracked);
    }
    return tracked;
  }

  /**
   * Records one change where it belongs (see the class comment): by default in the
   * unit of work of the code running now, or in `unitOfWork` when the caller knows it.
   * Work running in the context of a unit that has ended is late work: it is recorded
   * as the `system`'s, with the unit's request id as `originRequestId`.
   */
  async record(
    runner: QueryRunner | undefined,
    change: Omit<CapturedChange, 'at'>,
    unitOfWork: UnitOfWork | null = this.context.current() ?? null,
  ): Promise<void> {
    const unit = unitOfWork && !unitOfWork.isLive ? unitOfWork.lateUnit() : unitOfWork;
    const deleteDateField = this.deleteDateField(runner?.connection ?? this.dataSources.audit, change.entity);
    const captured: CapturedChange = { ...change, at: new Date(), ...(deleteDateField ? { deleteDateField } : {}) };
    // A runner whose turn another write holds (see runner-turn): its transaction is that
    // write's, and the statement recorded here was run outside it.
    const dataSource = runner?.connection ?? this.dataSources.audit;
    const elsewhere = heldElsewhere(runner);
    const stack = !elsewhere && runner?.isTransactionActive ? this.frames.get(runner) : undefined;
    const frame = stack?.[stack.length - 1];
    if (frame) {
      let set = frame.changes.get(unit);
      if (!set) frame.changes.set(unit, (set = new ChangeSet()));
      set.record(captured);
      if (unit?.isLive) {
        this.hold(runner!, unit);
        // A unit's memory is bounded: past the bound its changes go to the journal now,
        // in the transaction, and are read back from there when the unit is stored.
        if (set.size >= this.spillAt) add(frame.spilled, unit, await this.journal.write(runner!.manager, unit, set.take(() => true), true));
      }
    } else if (unit?.isLive) {
      // A write outside any transaction (raw SQL, `save(…, { transaction: false })`):
      // journaled right after it, as close to the change as such a write allows.
      unit.changes.record(captured);
      // The write has committed already: a failed journal write cannot undo it, and the
      // change stays with its unit (stored when the unit ends), so it is only logged.
      try {
        // On the write's connection while the app holds it (see holdsConnection), else on one of its own.
        const written = onHeldOrOwnRunner(runner, dataSource, (manager) => this.journal.write(manager, unit, [captured]));
        unit.journaling(written);
        unit.journaled(await written, false, dataSource);
      } catch (error) {
        this.logger.warn(`Could not journal a ${change.operation} of ${change.entity} made outside a transaction: ${(error as Error).message}`);
      }
    } else {
      // Already committed: stored at once — in the transaction the app opened by hand on
      // that connection (a raw BEGIN) when there is one and it holds `audit_log`; on that
      // connection while the app holds it outside a transaction (see onHeldRunner); else
      // on the writer's own (a runner with no transaction may be released before a retry).
      const audit = this.dataSources.audit;
      if (!elsewhere && runner?.isReleased === false && runner.isTransactionActive && runner.connection === audit) await this.storeFallback(unit, [captured], runner.manager);
      else await onHeldRunner(runner, audit, (manager) => this.storeFallback(unit, [captured], manager));
    }
  }

  /** Records changes one after another, in order (their merge depends on it). */
  async recordAll(runner: QueryRunner | undefined, changes: readonly Omit<CapturedChange, 'at'>[]): Promise<void> {
    for (const change of changes) await this.record(runner, change);
  }

  /**
   * Adds the event of a `log()` call made outside any live unit of work but inside a
   * transaction to that transaction's current level: at the outermost commit it claims
   * its target's changes and is written in the transaction; a rollback of its level (a
   * savepoint too) drops it. `late`: the late unit of the work it runs in, whose changes it
   * claims from (outside any unit: the changes made outside any). False when `runner` has
   * no transaction.
   */
  logInTransaction(runner: QueryRunner, intent: PendingIntent, late?: UnitOfWork): boolean {
    const stack = runner.isTransactionActive ? this.frames.get(runner) : undefined;
    const frame = stack?.[stack.length - 1];
    if (!frame) return false;
    frame.intents.push({ intent, unit: late ?? null });
    return true;
  }

  private readonly deleteDateFields = new WeakMap<DataSource, Map<string, string | undefined>>();

  private deleteDateField(dataSource: DataSource, entity: string): string | undefined {
    let fields = this.deleteDateFields.get(dataSource);
    if (!fields) this.deleteDateFields.set(dataSource, (fields = new Map()));
    if (!fields.has(entity)) {
      const metadata = dataSource.entityMetadatas.find((candidate) => candidate.name === entity);
      fields.set(entity, metadata?.deleteDateColumn?.propertyPath);
    }
    return fields.get(entity);
  }

  transactionStarted(runner: QueryRunner): void {
    const stack = this.frames.get(runner) ?? [];
    stack.push(newFrame());
    this.frames.set(runner, stack);
  }

  /**
   * The app set a savepoint with a raw `SAVEPOINT` statement on `runner`, in a transaction:
   * a level of its own, ended by a raw `ROLLBACK TO` or `RELEASE` of it, or with the level
   * around it. `name`: as its database compares names. `replaces`: a savepoint of the same
   * name is removed first (MySQL, MariaDB), its changes kept in the level around it;
   * elsewhere it stays, hidden by the new one until that one is released.
   */
  savepointSet(runner: QueryRunner, name: string, replaces: boolean): void {
    const stack = this.frames.get(runner);
    if (!stack?.length) return;
    if (replaces) {
      const index = savepointIndex(stack, name);
      if (index > 0) {
        absorbFrame(stack[index - 1]!, stack[index]!);
        stack.splice(index, 1);
      }
    }
    stack.push(newFrame(name));
  }

  /**
   * A raw `ROLLBACK TO SAVEPOINT` of `name` succeeded on `runner`: the changes made since
   * the savepoint (in the savepoints set after it too) never happened. The savepoint stays.
   * A name set otherwise (TypeORM's, or in a text of several statements) is left alone.
   */
  rolledBackToSavepoint(runner: QueryRunner, name: string): void {
    const stack = this.frames.get(runner);
    const index = stack ? savepointIndex(stack, name) : -1;
    if (index <= 0) return;
    stack!.splice(index);
    stack!.push(newFrame(name));
  }

  /**
   * A raw `ROLLBACK TO SAVEPOINT typeorm_<depth>` succeeded on `runner`: TypeORM's own
   * savepoint of its nested transaction at `depth`. The changes made since (in that level and
   * every level set after it, raw savepoints included) never happened; TypeORM's level stays
   * open, as the savepoint does. Left alone when the levels followed do not match TypeORM's
   * depth (a transaction whose start the module did not see).
   */
  rolledBackToTypeormSavepoint(runner: QueryRunner, depth: number): void {
    const stack = this.frames.get(runner);
    if (!stack || depth < 1) return;
    const typeormLevels = stack.flatMap((frame, index) => (frame.savepoint === undefined ? [index] : []));
    // TypeORM's nesting depth (a protected field of its query runners, 0.3 and 1.x alike).
    const typeormDepth = (runner as unknown as { transactionDepth?: unknown }).transactionDepth;
    if (typeormLevels.length !== typeormDepth || depth >= typeormLevels.length) return;
    stack.splice(typeormLevels[depth]!);
    stack.push(newFrame());
  }

  /** A raw `RELEASE SAVEPOINT` of `name` succeeded on `runner`: its changes (and those of the savepoints set after it) belong to the level around it. */
  savepointReleased(runner: QueryRunner, name: string): void {
    const stack = this.frames.get(runner);
    const index = stack ? savepointIndex(stack, name) : -1;
    if (index <= 0) return;
    const parent = stack![index - 1]!;
    for (const frame of stack!.splice(index)) absorbFrame(parent, frame);
  }

  /**
   * The server rolled the whole transaction of `runner` back on its own (an InnoDB deadlock
   * on MySQL and MariaDB): its changes never happened, whatever TypeORM does next. What the
   * app runs on the runner afterwards runs outside any transaction, until it starts one.
   */
  transactionLost(runner: QueryRunner): void {
    const stack = this.frames.get(runner);
    if (!stack?.length) return;
    stack.splice(0);
    takeUnsent(runner);
    this.releaseHolders(runner, true);
  }

  /**
   * Before the outermost COMMIT, in the transaction: the live units' changes go to the
   * journal; what no live unit will claim (changes outside any unit, late work, and the
   * events of `log()` calls made in the transaction outside a unit) goes to `audit_log`.
   * A failure here fails the COMMIT: nothing commits without its record.
   */
  beforeCommit(runner: QueryRunner): Promise<void> | void {
    const stack = this.frames.get(runner);
    // Raw savepoints still set end with it: their changes commit with it.
    if (stack) settleSavepoints(stack, true);
    if (!stack || stack.length !== 1) return;
    const frame = stack[0]!;
    // Written already, before a COMMIT of the app's that failed with the transaction still open (SQLite).
    if (frame.byHand) return;
    if (frame.changes.size === 0 && frame.intents.length === 0) {
      frame.committing = true;
      return;
    }
    return this.journalAtCommit(runner, frame);
  }

  private async journalAtCommit(runner: QueryRunner, frame: Frame): Promise<void> {
    // `log()` events made in the transaction outside a live unit: a unit of the transaction's
    // own for those made outside any unit, and one for those of each request's late work
    // (with its `originRequestId`), each claiming the changes made where its events were.
    // Most transactions have none: then nothing is allocated here.
    let logged: Map<UnitOfWork | null, UnitOfWork> | undefined;
    if (frame.intents.length) {
      logged = new Map();
      for (const { intent, unit } of frame.intents.splice(0)) {
        let own = logged.get(unit);
        if (!own) logged.set(unit, (own = new UnitOfWork({ source: 'system', actor: { type: 'system' } }, unit?.originRequestId)));
        own.intents.push(intent);
      }
    }
    // `audit_log` is in another data source: what would be written in the transaction is
    // journaled in it instead, and stored once it has committed.
    const elsewhere = runner.connection !== this.dataSources.audit;
    for (const [unit, set] of frame.changes) {
      if (unit?.isLive) {
        if (unit.changes.size + set.size > this.spillAt) {
          frame.changes.delete(unit);
          add(frame.spilled, unit, await this.journal.write(runner.manager, unit, set.take(() => true), true));
        } else {
          // The changes also stay in the frame: the commit hands them to the unit.
          add(frame.journalRows, unit, await this.journal.write(runner.manager, unit, set.list(), false, true));
        }
        continue;
      }
      frame.changes.delete(unit);
      const own = logged?.get(unit);
      if (own) {
        own.changes.absorb(set);
        continue;
      }
      if (elsewhere) {
        // Attributed as its fallback events would be; each transaction's carrier is a unit of its own.
        const actor = unit ? () => this.recorder.resolveActor(unit) : { type: 'system' };
        const carrier = new UnitOfWork({ source: unit?.source ?? 'system', request: unit?.request, actor }, unit?.originRequestId);
        carrier.changes.absorb(set);
        await this.carry(runner, frame, carrier);
        continue;
      }
      await this.storeFallback(unit, set.take(() => true), runner.manager);
    }
    if (logged) {
      for (const own of logged.values()) {
        if (elsewhere) await this.carry(runner, frame, own);
        else await this.recorder.storeNow(this.events.build(own, { type: 'system' }), runner.manager);
      }
    }
    frame.committing = true;
  }

  /** Journals the changes of `carrier` in the transaction; its events are stored once the transaction has committed. */
  private async carry(runner: QueryRunner, frame: Frame, carrier: UnitOfWork): Promise<void> {
    frame.carried.push({ unit: carrier, ids: await this.journal.write(runner.manager, carrier, carrier.changes.list()) });
  }

  /** After a COMMIT (or RELEASE SAVEPOINT): hand the level's changes up. */
  committed(runner: QueryRunner): void {
    const stack = this.frames.get(runner);
    if (stack) settleSavepoints(stack, true);
    const frame = stack?.pop();
    if (!stack || !frame) return;
    const parent = stack[stack.length - 1];
    if (parent) {
      absorbFrame(parent, frame);
    } else {
      for (const [unit, set] of frame.changes) if (unit?.isLive) unit.changes.absorb(set);
      // Only the outermost COMMIT carries the journal rows (a savepoint's RELEASE, e.g. of
      // events stored in the transaction while committing, does not).
      const unsent = takeUnsent(runner);
      if (unsent) void this.sendLate(runner, unsent);
      const dataSource = runner.connection;
      for (const [unit, ids] of frame.journalRows) unit.journaled(ids, false, dataSource);
      for (const [unit, ids] of frame.spilled) unit.journaled(ids, true, dataSource);
      this.releaseHolders(runner, false);
      for (const { unit, ids } of frame.carried) {
        unit.journaled(ids, false, dataSource);
        void this.recorder.storeEnded(unit);
      }
    }
  }

  /**
   * The outermost COMMIT on `runner` failed with `error`. An answer of the server on a
   * connection still up (PostgreSQL's serialization failure at commit, a deferred
   * constraint) means the transaction did not commit; only a connection lost while the
   * COMMIT was out leaves its outcome unknown (see {@link rollingBack}).
   */
  commitFailed(runner: QueryRunner, error: unknown): void {
    const stack = this.frames.get(runner);
    const frame = stack?.length === 1 ? stack[0] : undefined;
    if (frame?.committing) frame.commitRefused = serverRefused(error);
  }

  /**
   * Before a ROLLBACK (or ROLLBACK TO SAVEPOINT) — taken as done even if the statement then
   * fails, since a connection that fails it has lost the transaction anyway: the level's
   * changes never happened, also after a COMMIT the server refused. After a COMMIT that
   * failed otherwise (the connection dropped while it was sent) the outcome is unknown: the units keep the changes and journal row ids, and find
   * out when they are stored whether those rows exist. Not on SQLite, where a COMMIT that
   * failed did not commit (a deferred constraint, a busy database: the transaction is
   * still open, and this ROLLBACK ends it) — and asking the journal before the ROLLBACK
   * has run would read the transaction's own rows on SQLite's one connection.
   */
  rollingBack(runner: QueryRunner): void {
    const stack = this.frames.get(runner);
    // Raw savepoints set in the level end with it.
    if (stack) settleSavepoints(stack, false);
    const frame = stack?.pop();
    // A savepoint rolled back: the journal rows of the outer transaction still ride on its COMMIT.
    if (stack?.length) return;
    // Journal rows meant to ride on a COMMIT that is not coming: nothing to keep.
    takeUnsent(runner);
    const uncertain = frame?.committing === true && frame.commitRefused !== true && !isSqlite(runner.connection);
    if (uncertain) {
      for (const unit of new Set([...frame.journalRows.keys(), ...frame.spilled.keys()])) {
        unit.addUncertain({
          ids: frame.journalRows.get(unit) ?? [],
          spilledIds: frame.spilled.get(unit) ?? [],
          changes: frame.changes.get(unit)?.list() ?? [],
          dataSource: runner.connection,
        });
      }
    }
    this.releaseHolders(runner, !uncertain);
  }

  /**
   * How `sql`, a statement the app sends on `runner` while TypeORM has it in a transaction,
   * ends the transaction the module follows there: a raw `COMMIT` or `ROLLBACK`, or on
   * MySQL and MariaDB a statement that commits before it runs (see `transactionEnd`).
   * Undefined for the module's own statements, for TypeORM's COMMIT (its journal rows are
   * written: the frame is committing) and ROLLBACK (its frames are gone), and where the
   * module follows no transaction on `runner` (none begun through TypeORM, or ended).
   */
  endingByHand(runner: QueryRunner, sql: string, parameters: unknown): TransactionEnd | undefined {
    if (isOwnStatement(parameters)) return undefined;
    const stack = this.frames.get(runner);
    const outer = stack?.[0];
    if (!outer || (outer.committing && !outer.byHand) || heldElsewhere(runner)) return undefined;
    const dialect = transactionDialect(runner.connection);
    return dialect ? transactionEnd(sql, dialect) : undefined;
  }

  /**
   * Before a statement of the app's that ends the transaction on `runner`. A commit point:
   * every level of the transaction commits with it, so the levels are merged and the
   * records are written as at TypeORM's COMMIT, in the transaction, as statements of their
   * own (a failure fails the statement, which is then not sent). A ROLLBACK: every level's
   * changes never happened (as at TypeORM's, taken as done even if the statement fails).
   */
  async beforeEndingByHand(runner: QueryRunner, end: TransactionEnd): Promise<void> {
    const stack = this.frames.get(runner);
    if (!stack?.length) return;
    if (end.ends === 'rollback') {
      stack.splice(1);
      this.rollingBack(runner);
      return;
    }
    // Every level above the outermost (savepoints of TypeORM's and raw ones alike) commits into it.
    while (stack.length > 1) absorbFrame(stack[stack.length - 2]!, stack.pop()!);
    const frame = stack[0]!;
    if (frame.committing) return;
    if (frame.changes.size || frame.intents.length) {
      await this.journalAtCommit(runner, frame);
      // PostgreSQL: rows meant to ride on TypeORM's own COMMIT go now, ahead of the app's statement.
      for (const sql of takeUnsent(runner) ?? []) await runner.query(sql, ownStatement([]));
    }
    // Only once the records are written: a failure above leaves them to TypeORM's COMMIT, if one comes.
    frame.committing = true;
    frame.byHand = true;
  }

  /**
   * Once that statement has run (`ok`) or failed. A commit point that ran: the changes are
   * committed, handed to their units as at TypeORM's COMMIT; the runner is then in no
   * transaction the module follows (what the app does next on it is recorded as outside
   * one), unless the statement opened the next one (`COMMIT AND CHAIN`, MySQL's `BEGIN`).
   * One that failed: on SQLite the transaction is still open, with its records (a COMMIT
   * that fails there does not end it); elsewhere its outcome is not known, as after a
   * COMMIT of TypeORM's that failed (MySQL and MariaDB commit before running such a
   * statement, even one that then fails): the units find out, when they are stored,
   * whether the records were committed.
   *
   * PostgreSQL's `PREPARE TRANSACTION` (`end.prepares`) is a commit point whose outcome the
   * session never sees: the records were written in the transaction, so they are prepared
   * (and later committed, or not) with it. Once prepared, the units find out when they are
   * stored, as above, whether it was committed by then. Refused by the server (prepared
   * transactions disabled, a temporary table touched), it became a ROLLBACK: the changes
   * never happened.
   */
  afterEndingByHand(runner: QueryRunner, end: TransactionEnd, ok: boolean, error?: unknown): void {
    const stack = this.frames.get(runner);
    if (end.prepares && stack?.length === 1) {
      if (!ok) stack[0]!.commitRefused = serverRefused(error);
      this.rollingBack(runner);
      return;
    }
    if (end.ends === 'commit' && stack?.length) {
      if (ok) this.committed(runner);
      else if (isSqlite(runner.connection)) return;
      else this.rollingBack(runner);
    }
    if (ok && end.reopens) this.transactionStarted(runner);
  }

  /**
   * Journal rows handed to a COMMIT that went without them (TypeORM committed some other
   * way than the one checked at start): written now, on their own, so that recovery
   * still finds them, and said loudly.
   */
  private async sendLate(runner: QueryRunner, statements: string[]): Promise<void> {
    this.logger.error(
      `Audit: a transaction committed without its audit journal rows (this TypeORM version commits in a way the module did not expect); writing them now`,
    );
    try {
      for (const sql of statements) await runner.connection.query(sql, ownStatement([]));
    } catch (error) {
      this.logger.error(`Audit: the journal rows of a committed transaction could not be written: ${String(error)}`);
    }
  }

  private hold(runner: QueryRunner, unit: UnitOfWork): void {
    let holders = this.holders.get(runner);
    if (!holders) this.holders.set(runner, (holders = new Set()));
    if (!holders.has(unit)) {
      holders.add(unit);
      unit.holdTransaction(runner);
    }
  }

  private releaseHolders(runner: QueryRunner, rolledBack: boolean): void {
    const holders = this.holders.get(runner);
    if (!holders) return;
    this.holders.delete(runner);
    for (const unit of holders) unit.releaseTransaction(runner, rolledBack);
  }

  private async storeFallback(unit: UnitOfWork | null, changes: CapturedChange[], manager?: EntityManager): Promise<void> {
    if (changes.length === 0) return;
    const actor = unit ? await this.recorder.resolveActor(unit) : { type: 'system' };
    const rows = changes.map((change) => this.events.changeEvent(change, unit ?? undefined, actor));
    await this.recorder.storeNow(rows, manager);
  }

  private isCaptured(metadata: EntityMetadata): boolean {
    if (AUDIT_ENTITIES.has(metadata.target) || metadata.tableName === AUDIT_LOG_TABLE) return false;
    if (metadata.tableType === 'view' || metadata.tableType === 'junction' || metadata.tableType === 'closure-junction') {
      return false;
    }
    const matches = (ref: AuditEntityRef) => ref === metadata.target || ref === metadata.name || ref === metadata.tableName;
    if (isExcludedEntity(metadata.target) || this.options.excludeEntities.some(matches)) return false;
    return this.options.includeEntities ? this.options.includeEntities.some(matches) : true;
  }

  warn(message: string): void {
    this.logger.warn(message);
  }
}
