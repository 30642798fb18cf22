import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Between, In, IsNull, MoreThan, type DataSource, type EntityManager } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { ownStatement } from '../capture/own-statements.js';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import { UnverifiedNoteError } from '../exceptions/unverified-note.error.js';
import type { AuditCheckpoint } from '../interfaces/audit-integrity.interface.js';
import { JournalRecovery } from '../journal/journal-recovery.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditCheckpointEntity } from '../storage/audit-checkpoint.entity.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { classifyDatabaseError } from '../storage/database-errors.js';
import { escapedTable, placeholders, valuesTable } from '../storage/sql.js';
import { canonicalEventJson } from './canonical-json.js';
import { checkpointOfNote, formatCheckpoint, openNote, signNote } from './checkpoint-note.js';
import { integratorDialect, withIntegratorLock, type IntegratorDialect } from './integrator-lock.js';
import type { ResolvedIntegrity } from './integrity-options.js';
import { verifiersFor } from './proofs.js';
import { appendLeaves, combineSubtrees, emptyRootHash, leafHashOfText, perfectSubtrees, type HashedNode } from './merkle.js';
import { readStoredEvents, type StoredEvent } from './stored-events.js';
import { checkpointOfRow } from './stored-checkpoint.js';
import { MissingTreeNodeError, TreeStore } from './tree-store.js';
import { findOneQuietly, findQuietly } from '../storage/quiet-find.js';

/** Events sequenced per transaction. */
export const BATCH = 2_000;
/** Rows per multi-row statement. */
const ROWS_PER_STATEMENT = 500;
/** How long `checkpoint()` waits for another instance's batch. */
const LOCK_WAIT_MS = 30_000;
/**
 * ms between timed passes while events arrive (the last pass sequenced some), when
 * `sequenceEvery` is longer: the same work in small batches costs the app less per request
 * than in one batch a second (fewer rows hydrated and hashed in one go, kept past a young
 * generation collection), and an idle app still polls once per `sequenceEvery`.
 */
const BUSY_PACE_MS = 100;

interface Statement {
  sql: string;
  params: unknown[];
  /** Rows the statement must change, else the batch is abandoned. */
  expect?: number;
}

/** What one batch did. */
export interface BatchOutcome {
  busy: boolean;
  /** Busy because the batch lost a race with another transaction (serialization failure, deadlock, a row held past the batch's lock wait): its error. */
  lostRace?: Error;
  /** The batch read on from the previous one and reached the end: a pass from the start follows. */
  restart?: boolean;
  sequenced: number;
  treeSize: number;
  checkpoint?: AuditCheckpoint;
}

/** A better-sqlite3 database handle, as the driver keeps it. */
interface SyncSqlite {
  inTransaction: boolean;
  prepare(sql: string): { run(...params: unknown[]): { changes: number }; get(...params: unknown[]): unknown };
  transaction<T>(fn: () => T): () => T;
}

class BatchAbandoned extends Error {}

/**
 * The integrator: gives stored events their gapless `seq` and their leaf in the Merkle
 * tree, and signs checkpoints. One instance at a time does a batch (the integrator lock:
 * PostgreSQL advisory lock, MySQL/MariaDB `GET_LOCK`, SQLite's writer lock), and a batch
 * is read, hashed and stored in one transaction, so a crash at any point leaves either the
 * whole batch or none of it. Every instance tries every `sequenceEvery` ms: when the
 * holder dies, another one goes on at its next try.
 */
@Injectable()
export class AuditIntegrator implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly tree = new TreeStore();
  private timer?: NodeJS.Timeout;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly startedAt = Date.now();
  private readonly skipped = new Set<string>();
  /** The id the next batch reads on from (see `plan`). */
  private after?: string;
  /** The next batch's events, read and hashed while the current batch's statements run (see `batch`). */
  private prefetched?: { after: string; read: Promise<ReadEvents | undefined> };
  /** Why the last timed pass could not go on, when only an administrator can resolve it (logged once). */
  private stalledOn?: string;
  private refusedReason?: string;
  /**
   * The tree this instance last left behind (its size and right edge, as it computed them):
   * stored rows that still match it need no check before a batch builds on them.
   */
  private wrote?: { size: number; frontier: readonly HashedNode[] };
  private stopped = false;
  /** What this instance did, for operators and tests: batches stored, events sequenced, the last batch's time. */
  readonly stats = { batches: 0, sequenced: 0, lastBatchAt: 0, prefetched: 0 };

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    private readonly recovery: JournalRecovery,
  ) {}

  /** Throws `AuditIntegrityError` when `integrity` is not configured. */
  requireIntegrity(): void {
    void this.integrity;
  }

  /** The integrity options, or an error saying they are missing. */
  get integrity(): ResolvedIntegrity {
    const integrity = this.options.integrity;
    if (!integrity) throw new AuditIntegrityError('not configured: pass `integrity: { signingKey, origin }` to AuditModule.forRoot()');
    return integrity;
  }

  async onApplicationBootstrap(): Promise<void> {
    const integrity = this.options.integrity;
    if (!integrity) return;
    integratorDialect(this.dataSource);
    try {
      await this.dataSource.getRepository(AuditTreeEntity).createQueryBuilder('t').select('t.level').where('1 = 0').getRawMany();
      await this.dataSource.getRepository(AuditCheckpointEntity).createQueryBuilder('c').select('c.treeSize').where('1 = 0').getRawMany();
      await this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('l').select('l.seq').where('1 = 0').getRawMany();
    } catch (error) {
      throw new Error(
        `The audit integrity tables are not usable (${(error as Error).message}): run AuditMigrations (or synchronize) so that ` +
          'audit_log.seq, audit_tree and audit_checkpoint exist',
        { cause: error },
      );
    }
    this.schedule(integrity.sequenceEvery);
  }

  /** The next timed pass, in `ms`. */
  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  /** After the writer's last events are stored: one last pass, bounded. */
  async beforeApplicationShutdown(): Promise<void> {
    if (!this.options.integrity || this.stopped) return;
    this.stop();
    await this.recovery.beforeApplicationShutdown();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, Math.min(5_000, this.options.shutdownTimeout)).unref());
    await Promise.race([this.run(() => this.sequenceAll(0, false)).catch(() => undefined), timeout]);
  }

  onApplicationShutdown(): void {
    this.stop();
  }

  private stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * One timed pass, then the next one scheduled: `sequenceEvery` later, or sooner
   * ({@link BUSY_PACE_MS}) when this pass sequenced events, as more are likely arriving.
   * Passes never overlap (the next is scheduled when one ends: on a database slower than
   * `sequenceEvery` they do not pile up, and `checkpoint()` does not wait behind them). A
   * pass scheduled before the shutdown does not run after it.
   */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    let sequenced = false;
    try {
      const outcome = await this.run(() => (this.stopped ? Promise.resolve(undefined) : this.sequenceAll(0, false))).catch((error: unknown) => ({ failed: error as Error }));
      const failure = outcome && ('failed' in outcome ? outcome.failed : outcome.lostRace);
      sequenced = !!outcome && !('failed' in outcome) && outcome.sequenced > 0;
      if (failure instanceof AuditIntegrityError) {
        // A state only an administrator can resolve: said once, not at every pass.
        if (failure.message !== this.stalledOn) this.logger.error(failure.message);
        this.stalledOn = failure.message;
      } else {
        if (failure) this.logger.warn(`Audit integrity: sequencing failed, retrying in ${this.integrity.sequenceEvery} ms: ${failure.message}`);
        this.stalledOn = undefined;
      }
    } finally {
      const every = this.integrity.sequenceEvery;
      this.schedule(sequenced ? Math.min(BUSY_PACE_MS, every) : every);
    }
  }

  /** Runs one integrator task at a time in this process. */
  private run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.chain.then(task, task);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Sequences every stored event now and returns a signed checkpoint of the whole tree:
   * a new one, or the last one when it already covers every event.
   */
  checkpoint(): Promise<AuditCheckpoint> {
    this.requireIntegrity();
    return this.run(async () => {
      const outcome = await this.sequenceAll(LOCK_WAIT_MS, true);
      if (outcome.busy) {
        throw new AuditIntegrityError(
          outcome.lostRace
            ? `no batch could be stored within ${LOCK_WAIT_MS} ms; the last failed with: ${outcome.lostRace.message}`
            : integratorDialect(this.dataSource) === 'sqlite'
              ? `SQLite's connection stayed in a transaction for ${LOCK_WAIT_MS} ms (checkpoint() cannot run inside a transaction on SQLite)`
              : `another instance held the integrator lock for ${LOCK_WAIT_MS} ms`,
        );
      }
      if (outcome.checkpoint) return outcome.checkpoint;
      const last = await this.lastCheckpoint(this.dataSource.manager);
      if (last && last.treeSize === outcome.treeSize) return checkpointOfRow(last);
      throw new AuditIntegrityError(this.refusedReason ?? 'no checkpoint could be signed');
    });
  }

  /** Batches until no stored event is left without a seq (or another instance holds the lock). */
  private async sequenceAll(waitMs: number, forceCheckpoint: boolean): Promise<BatchOutcome> {
    let total = 0;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const outcome = await this.batch(Math.max(0, deadline - Date.now()), forceCheckpoint);
      total += outcome.sequenced;
      // Busy (another instance's batch, a tree that moved, SQLite's connection in a transaction): try again while there is time.
      if (outcome.busy && Date.now() < deadline) {
        await sleep(20);
        continue;
      }
      if (outcome.busy || (outcome.sequenced < BATCH && !outcome.restart)) return { ...outcome, sequenced: total };
    }
  }

  /** One batch: read, hash, store, sign when due; in one transaction under the integrator lock. */
  async batch(waitMs: number, forceCheckpoint: boolean): Promise<BatchOutcome> {
    const dialect = integratorDialect(this.dataSource);
    if (dialect === 'sqlite') return this.sqliteBatch(forceCheckpoint);
    let planned: Plan | undefined;
    const result = await withIntegratorLock(this.dataSource, waitMs, async (manager, runner) => {
      const plan = await this.plan(manager, dialect, forceCheckpoint);
      planned = plan;
      // A full batch: the next one's events are read (on another connection) and hashed while
      // this one's UPDATE and INSERTs run in the database. Only unsequenced events after this
      // batch's last id are read, which this batch does not touch.
      if (plan.after !== undefined) this.prefetch(plan.after);
      for (const statement of plan.statements) {
        const outcome = await runner.query(statement.sql, ownStatement(statement.params), true);
        if (statement.expect !== undefined && outcome.affected !== statement.expect) {
          throw new BatchAbandoned(`expected ${statement.expect} rows changed, got ${outcome.affected}`);
        }
      }
      return plan;
    }).catch((error: unknown) => {
      if (error instanceof BatchAbandoned) return { busy: true as const };
      // A race lost to another transaction (a serialization failure under SERIALIZABLE, a
      // deadlock, a row it held past the batch's lock wait): nothing was written, the batch
      // is tried again.
      if (classifyDatabaseError(error) === 'transient') return { busy: true as const, lostRace: error as Error };
      return this.explained(error, planned);
    });
    if (result.busy) return { busy: true, sequenced: 0, treeSize: 0, ...('lostRace' in result ? { lostRace: result.lostRace } : {}) };
    return this.committed(result.value);
  }

  /**
   * SQLite: TypeORM shares one connection between every transaction of the process, so the
   * reads happen first, then the writes run synchronously in one transaction of their own
   * (nothing else can interleave), after checking that the tree did not move meanwhile.
   */
  private async sqliteBatch(forceCheckpoint: boolean): Promise<BatchOutcome> {
    const db = (this.dataSource.driver as unknown as { databaseConnection?: SyncSqlite }).databaseConnection;
    if (!db || typeof db.prepare !== 'function' || typeof db.transaction !== 'function') {
      throw new AuditIntegrityError(`the ${String(this.dataSource.options.type)} driver is not supported for integrity on SQLite: use better-sqlite3`);
    }
    if (db.inTransaction) return { busy: true, sequenced: 0, treeSize: 0 };
    const plan = await this.plan(this.dataSource.manager, 'sqlite', forceCheckpoint);
    if (db.inTransaction) return { busy: true, sequenced: 0, treeSize: 0 };
    const tree = escapedTable(this.dataSource, this.dataSource.getMetadata(AuditTreeEntity));
    const checkpoints = escapedTable(this.dataSource, this.dataSource.getMetadata(AuditCheckpointEntity));
    try {
      db.transaction(() => {
        const size = db.prepare(`SELECT COALESCE(MAX(idx) + 1, 0) AS size FROM ${tree} WHERE level = 0`).get() as { size: number };
        const last = db.prepare(`SELECT COALESCE(MAX(tree_size), 0) AS size FROM ${checkpoints}`).get() as { size: number };
        if (Number(size.size) !== plan.treeSizeBefore || Number(last.size) !== (plan.lastCheckpointSize ?? 0)) {
          throw new BatchAbandoned('the tree moved');
        }
        for (const statement of plan.statements) {
          const { changes } = db.prepare(statement.sql).run(...statement.params);
          if (statement.expect !== undefined && changes !== statement.expect) throw new BatchAbandoned(`expected ${statement.expect} rows changed, got ${changes}`);
        }
      })();
    } catch (error) {
      if (error instanceof BatchAbandoned) return { busy: true, sequenced: 0, treeSize: plan.treeSizeBefore };
      return this.explained(error, plan);
    }
    return this.committed(plan);
  }

  /** After the commit: hands the new checkpoint to `anchor`. */
  private async committed(plan: Plan): Promise<BatchOutcome> {
    this.after = plan.after;
    this.wrote = { size: plan.treeSizeAfter, frontier: plan.frontierAfter };
    if (plan.sequenced > 0 || plan.checkpoint) {
      this.stats.batches++;
      this.stats.sequenced += plan.sequenced;
      this.stats.lastBatchAt = Date.now();
    }
    const outcome: BatchOutcome = { busy: false, sequenced: plan.sequenced, treeSize: plan.treeSizeAfter, restart: plan.restart };
    if (plan.checkpoint) {
      outcome.checkpoint = plan.checkpoint;
      const anchor = this.integrity.anchor;
      if (anchor) {
        try {
          await anchor(plan.checkpoint);
        } catch (error) {
          this.logger.error(`Audit integrity: anchoring the checkpoint of tree size ${plan.checkpoint.treeSize} failed: ${(error as Error).message}`);
        }
      }
    }
    return outcome;
  }

  /**
   * Throws `error`, or, when a leaf of the tree already names an event of the failed batch
   * (the unique index on `audit_tree.event_id` refused its second leaf), an
   * `AuditIntegrityError` saying which: the event's seq was set back to NULL outside the
   * integrator, and taking it in again would sign whatever it holds now under a new seq.
   */
  private async explained(error: unknown, plan: Plan | undefined): Promise<never> {
    const ids = plan?.eventIds ?? [];
    let leaf: AuditTreeEntity | undefined;
    try {
      const events = this.dataSource.getRepository(AuditLogEntity);
      const tree = this.dataSource.getRepository(AuditTreeEntity);
      for (let from = 0; from < ids.length && !leaf; from += ROWS_PER_STATEMENT) {
        // Still without a seq: a batch that did commit (its answer lost) gave its events theirs, and its leaves are their own.
        const unsequenced = await findQuietly(events, { select: { id: true }, where: { id: In(ids.slice(from, from + ROWS_PER_STATEMENT)), seq: IsNull() } });
        if (unsequenced.length === 0) continue;
        [leaf] = await findQuietly(tree, { where: { level: 0, eventId: In(unsequenced.map((row) => row.id)) }, order: { index: 'ASC' }, take: 1 });
      }
    } catch {
      leaf = undefined; // the database is away: the batch's own error says so
    }
    if (!leaf) throw error;
    throw new AuditIntegrityError(
      `event ${leaf.eventId} has no seq, but leaf ${leaf.index} of the tree (seq ${leaf.index + 1}) names it: its seq was set back to NULL outside the integrator. ` +
        `Nothing more is sequenced or signed until an administrator sets its seq back to ${leaf.index + 1} (docs/integrity.md, "An event whose seq was removed")`,
    );
  }

  /**
   * The next `BATCH` events without a seq, after `after` (from the start without it), by
   * id, with their JSON columns read as stored text and checked (`readStoredEvents`).
   */
  private read(manager: EntityManager, after: string | undefined): Promise<StoredEvent[]> {
    const query = manager.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.seq IS NULL');
    if (after !== undefined) query.andWhere('e.id > :after', { after });
    return readStoredEvents(query.orderBy('e.id', 'ASC').limit(BATCH));
  }

  /** Each event's leaf hash, or why it has none. */
  private hashed(events: StoredEvent[]): ReadEvents {
    return { rows: events.map(({ row }) => row), leaves: events.map(leafOrError) };
  }

  /** Starts reading and hashing the batch after `after`, outside the batch's transaction. */
  private prefetch(after: string): void {
    const read = this.readAhead(after).then(
      (rows) => this.hashed(rows),
      () => undefined, // read again in the batch's own transaction
    );
    this.prefetched = { after, read };
  }

  /**
   * The read-ahead, in a READ COMMITTED transaction of its own whatever the database's
   * default: as a serializable transaction beside the batch's, which writes `audit_log`,
   * it made PostgreSQL abort the batch (a serialization failure) while the app stored
   * events, batch after batch.
   */
  private async readAhead(after: string): Promise<StoredEvent[]> {
    const runner = this.dataSource.createQueryRunner();
    try {
      await runner.connect();
      await runner.startTransaction('READ COMMITTED');
      const rows = await this.read(runner.manager, after);
      await runner.commitTransaction();
      return rows;
    } finally {
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      await runner.release();
    }
  }

  /**
   * The prefetched events when they were read for a batch that starts after `after`. They
   * were read before the previous batch committed: one that another instance has sequenced
   * meanwhile makes the seq UPDATE change fewer rows than expected, and the batch is
   * abandoned and read again.
   */
  private async takePrefetched(after: string | undefined): Promise<ReadEvents | undefined> {
    const prefetched = this.prefetched;
    this.prefetched = undefined;
    if (!prefetched || after === undefined || prefetched.after !== after) return undefined;
    const events = await prefetched.read;
    if (events) this.stats.prefetched++;
    return events;
  }

  private lastCheckpoint(manager: EntityManager): Promise<AuditCheckpointEntity | null> {
    return findOneQuietly(manager.getRepository(AuditCheckpointEntity), { where: {}, order: { treeSize: 'DESC' } });
  }

  /** Reads what a batch needs and builds its statements (nothing is written here). */
  private async plan(manager: EntityManager, dialect: IntegratorDialect, forceCheckpoint: boolean): Promise<Plan> {
    const integrity = this.integrity;
    const size = await this.tree.size(manager);
    // From where the last full batch ended (a catch-up reads on, not over the index entries
    // of the events it just sequenced); from the start once that reaches the end, so that an
    // event committed late with a smaller id is taken at the next pass.
    const after = this.after;
    const { rows, leaves: rowLeaves } = (await this.takePrefetched(after)) ?? this.hashed(await this.read(manager, after));
    const full = rows.length === BATCH;
    const last = await this.lastCheckpoint(manager);
    const frontier = await this.tree.frontier(manager, size).catch(async (error: unknown) => {
      // A node of the right edge absent: named by the rows' check when they are past the last checkpoint.
      if (error instanceof MissingTreeNodeError) await this.vouchForTail(manager, last, size);
      throw error;
    });

    // An event whose seq the integrator did not give (set by an UPDATE of a NULL seq, or a row
    // inserted with one): sequencing stops on it rather than take it into the tree, where a
    // forged row would be signed over as found. verify() reports it as inserted meanwhile.
    const [stray] = await findQuietly(manager.getRepository(AuditLogEntity), { where: { seq: MoreThan(size) }, order: { seq: 'ASC' }, take: 1 });
    if (stray) {
      throw new AuditIntegrityError(
        `event ${stray.id} has seq ${stray.seq}, which the integrator did not give it (the tree has ${size} leaves): ` +
          'nothing more is sequenced or signed until an administrator removes the row or sets its seq back to NULL (docs/integrity.md, "An event given a seq outside the integrator")',
      );
    }
    await this.vouchForTail(manager, last, size, frontier);

    const ordered: AuditLogEntity[] = [];
    const assigned: Array<{ row: AuditLogEntity; seq: number }> = [];
    const leaves: Buffer[] = [];
    const skip = (row: AuditLogEntity, error: Error): undefined => {
      if (!this.skipped.has(row.id)) this.logger.error(`Audit integrity: event ${row.id} cannot be sequenced: ${error.message}`);
      this.skipped.add(row.id);
      return undefined;
    };
    for (const [index, row] of rows.entries()) {
      const hashed = rowLeaves[index]!;
      const leaf = hashed instanceof Error ? skip(row, hashed) : hashed;
      if (!leaf) continue;
      const seq = size + ordered.length + 1;
      ordered.push(row);
      assigned.push({ row, seq });
      leaves.push(leaf);
    }
    const appended = appendLeaves(size, frontier, leaves);
    const treeSizeAfter = size + leaves.length;
    const statements = [...this.seqStatements(dialect, assigned), ...this.nodeStatements(dialect, appended.nodes, ordered, size)];

    const plan: Plan = {
      statements,
      eventIds: ordered.map((row) => row.id),
      after: full ? rows[rows.length - 1]!.id : undefined,
      restart: !full && after !== undefined,
      sequenced: rows.length,
      treeSizeBefore: size,
      treeSizeAfter,
      frontierAfter: appended.frontier,
      lastCheckpointSize: last?.treeSize,
    };
    const lastSize = last?.treeSize ?? 0;
    const sinceLast = Date.now() - (last ? last.createdAt.getTime() : this.startedAt);
    // Forced (checkpoint()): once, on the batch that finds no more events.
    const forced = forceCheckpoint && !full && after === undefined;
    // checkpoint() on a log with no event and no checkpoint yet signs the empty tree (size 0).
    const grew = treeSizeAfter > lastSize || (forced && !last);
    const due = grew && (forced || treeSizeAfter - lastSize >= integrity.checkpointEvents || sinceLast >= integrity.checkpointMs);
    if (due) {
      const refusal = await this.refusal(manager, last, size, frontier);
      if (refusal) {
        if (refusal !== this.refusedReason) this.logger.error(`Audit integrity: no checkpoint is signed: ${refusal}`);
        this.refusedReason = refusal;
      } else {
        this.refusedReason = undefined;
        const root = treeSizeAfter === 0 ? emptyRootHash() : appended.root;
        const note = signNote(formatCheckpoint({ origin: integrity.origin, treeSize: treeSizeAfter, rootHash: root }), integrity.signer);
        plan.checkpoint = { treeSize: treeSizeAfter, rootHash: root.toString('base64'), note };
        statements.push(this.checkpointStatement(plan.checkpoint, root));
      }
    }
    return plan;
  }

  /**
   * Throws when the stored rows of `audit_tree` past the last checkpoint (leaves `signed`
   * to `size - 1`) are not the ones the integrator would have written: a batch would give
   * the next event a seq past a forged leaf, or sign a root over an altered node. Stored
   * rows whose size and right edge are what this instance left behind are taken as they
   * are (no read); otherwise (another instance held the role, a restart, or the rows were
   * changed) each leaf in the range must name the event at its seq and be that event's
   * hash, and the nodes over them must rebuild from them. Events removed by a purge (a
   * prefix of the log: no event with a smaller seq is left) are taken at their leaf.
   */
  private async vouchForTail(manager: EntityManager, last: AuditCheckpointEntity | null, size: number, frontier?: readonly HashedNode[]): Promise<void> {
    const wrote = this.wrote;
    if (frontier && wrote && wrote.size === size && sameNodes(wrote.frontier, frontier)) return;
    const signed = last?.treeSize ?? 0;
    if (size <= signed) return;
    const fault = (what: string, cause = 'the integrator did not write this row as it is'): AuditIntegrityError =>
      new AuditIntegrityError(
        `${what}, past the last checkpoint (tree size ${signed}): ${cause}, and nothing more is sequenced or signed ` +
          `until an administrator looks at the rows past the last checkpoint, removes those of audit_tree and sets the seq of the events past it back to NULL ` +
          '(docs/integrity.md, "A tree row past the last checkpoint altered or forged")',
      );
    const bounds = await manager
      .getRepository(AuditLogEntity)
      .createQueryBuilder('e')
      .select('MIN(e.seq)', 'first')
      .addSelect('MAX(e.seq)', 'last')
      .where('e.seq IS NOT NULL')
      .getRawOne<{ first: string | number | null; last: string | number | null }>();
    const first = bounds?.first === null || bounds?.first === undefined ? Infinity : Number(bounds.first);
    const lastSeq = bounds?.last === null || bounds?.last === undefined ? 0 : Number(bounds.last);
    if (lastSeq < size) {
      throw fault(`audit_tree has a leaf at level 0, index ${size - 1} (seq ${size}), but no event has a seq past ${lastSeq}`);
    }
    // The right edge at the last checkpoint, when the stored rows give the signed root; else
    // the rows below the checkpoint were altered (refusal() says so when a checkpoint is due),
    // and only the nodes past it, which do not depend on the edge, are compared.
    let edge: HashedNode[];
    let edgeSigned = signed === 0;
    try {
      edge = await this.tree.frontier(manager, signed);
      if (last && !edgeSigned) edgeSigned = combineSubtrees(edge.map((node) => node.hash)).equals(signedRoot(last.note) ?? Buffer.alloc(0));
    } catch (error) {
      if (!(error instanceof MissingTreeNodeError)) throw error;
      edge = perfectSubtrees({ start: 0, end: signed }).map((node) => ({ ...node, hash: Buffer.alloc(32) }));
    }
    for (let from = signed; from < size; from += BATCH) {
      const to = Math.min(size, from + BATCH);
      const leafRows = await findQuietly(manager.getRepository(AuditTreeEntity), {
        where: { level: 0, index: Between(from, to - 1) },
        order: { index: 'ASC' },
      });
      const leafAt = new Map(leafRows.map((row) => [Number(row.index), row]));
      const events = await readStoredEvents(
        manager.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.seq > :from', { from }).andWhere('e.seq <= :to', { to }).orderBy('e.seq', 'ASC'),
      );
      const eventsAt = new Map<number, StoredEvent[]>();
      for (const event of events) eventsAt.set(Number(event.row.seq), [...(eventsAt.get(Number(event.row.seq)) ?? []), event]);
      const leaves: Buffer[] = [];
      for (let index = from; index < to; index++) {
        const seq = index + 1;
        const leaf = leafAt.get(index);
        if (!leaf) throw fault(`audit_tree has no leaf at level 0, index ${index} (seq ${seq}), though it has leaves up to index ${size - 1}`);
        const hash = Buffer.from(leaf.hash, 'hex');
        if (hash.length !== 32 || hash.toString('hex') !== leaf.hash) throw fault(`audit_tree's leaf at level 0, index ${index} (seq ${seq}) does not hold a SHA-256 hash`);
        const at = eventsAt.get(seq);
        if (!at) {
          if (seq < first) {
            leaves.push(hash); // purged: the oldest events go, their leaves stay
            continue;
          }
          throw fault(`audit_tree has a leaf at level 0, index ${index} (seq ${seq}) that names ${leaf.eventId ?? 'no event'}, but no event has seq ${seq}`);
        }
        const own = at.some((event) => event.row.id === leaf.eventId && matches(leafOrError(event), hash));
        if (!own) {
          throw fault(
            `audit_tree's leaf at level 0, index ${index} (seq ${seq}) is not the hash of the event with seq ${seq}, or names another event`,
            'the event or its tree row was changed after it was sequenced',
          );
        }
        leaves.push(hash);
      }
      const appended = appendLeaves(from, edge, leaves);
      const inner = appended.nodes.filter((node) => node.level > 0 && (edgeSigned || node.index * 2 ** node.level >= signed));
      let stored: Buffer[];
      try {
        stored = await this.tree.hashes(manager, inner);
      } catch (error) {
        if (error instanceof MissingTreeNodeError) throw fault(error.message.replace(/: the tree was altered.*$/, ''));
        throw error;
      }
      inner.forEach((node, i) => {
        if (!stored[i]!.equals(node.hash)) {
          const span = 2 ** node.level;
          throw fault(`audit_tree node at level ${node.level}, index ${node.index} (over events ${node.index * span + 1} to ${(node.index + 1) * span}) is not the hash of the leaves below it`);
        }
      });
      edge = appended.frontier;
    }
  }

  /**
   * Why the next checkpoint must not be signed, if it must not: the last checkpoint does
   * not match the stored tree (its root at that size), is not one of this log's, or its
   * signature by a known key is bad. A checkpoint that does not extend the previous one
   * is never signed.
   */
  private async refusal(manager: EntityManager, last: AuditCheckpointEntity | null, size: number, frontier: readonly HashedNode[]): Promise<string | undefined> {
    if (!last) return undefined;
    if (last.treeSize > size) return `the last checkpoint covers ${last.treeSize} events but the tree holds ${size}: audit_tree was truncated`;
    let signedRoot: string;
    try {
      const checkpoint = checkpointOfNote(last.note);
      if (checkpoint.origin !== this.integrity.origin) return `the last checkpoint names origin ${JSON.stringify(checkpoint.origin)}, not ${JSON.stringify(this.integrity.origin)}`;
      if (checkpoint.treeSize !== BigInt(last.treeSize)) return `the last checkpoint's note says tree size ${checkpoint.treeSize}, its row ${last.treeSize}`;
      signedRoot = checkpoint.rootHash.toString('hex');
      try {
        openNote(last.note, verifiersFor(last.note, this.integrity.publicKeys));
      } catch (error) {
        // Signed by a key this instance does not know (an older one not in `verificationKeys`): its root is still checked.
        if (!(error instanceof UnverifiedNoteError)) throw error;
      }
    } catch (error) {
      return `the last checkpoint (tree size ${last.treeSize}) is not a valid signed note: ${(error as Error).message}`;
    }
    const root =
      last.treeSize === 0 ? emptyRootHash() : last.treeSize === size ? combineSubtrees(frontier.map((node) => node.hash)) : await this.tree.root(manager, last.treeSize);
    // The signed root, not the row's root_hash column: verify() reports a column that differs.
    if (root.toString('hex') !== signedRoot) {
      return `the stored tree does not extend the last checkpoint (tree size ${last.treeSize}): audit_tree or audit_checkpoint was altered`;
    }
    return undefined;
  }

  private seqStatements(dialect: IntegratorDialect, assigned: ReadonlyArray<{ row: AuditLogEntity; seq: number }>): Statement[] {
    if (assigned.length === 0) return [];
    const table = escapedTable(this.dataSource, this.dataSource.getMetadata(AuditLogEntity));
    if (dialect === 'postgres') {
      return [
        {
          sql: `UPDATE ${table} SET "seq" = v.seq FROM (SELECT unnest($1::uuid[]) AS id, unnest($2::bigint[]) AS seq) AS v WHERE ${table}."id" = v.id AND ${table}."seq" IS NULL`,
          params: [assigned.map(({ row }) => row.id), assigned.map(({ seq }) => String(seq))],
          expect: assigned.length,
        },
      ];
    }
    const q = (name: string) => this.dataSource.driver.escape(name);
    const statements: Statement[] = [];
    for (let from = 0; from < assigned.length; from += ROWS_PER_STATEMENT) {
      const chunk = assigned.slice(from, from + ROWS_PER_STATEMENT);
      if (dialect === 'mysql') {
        // The events' ids and seqs joined to audit_log by its primary key, one lookup per
        // event: `id IN (…)` was read as a scan of the whole table while the batch was most
        // of it (a young log), and the scan waited for the events requests were storing
        // (locking every row it read, theirs too) and held up their inserts.
        statements.push({
          sql: `UPDATE ${valuesTable(chunk.length, ['id', 'seq'], 'v')} STRAIGHT_JOIN ${table} AS e FORCE INDEX (PRIMARY) ON e.${q('id')} = v.id SET e.${q('seq')} = v.seq WHERE e.${q('seq')} IS NULL`,
          params: chunk.flatMap(({ row, seq }) => [row.id, seq]),
          expect: chunk.length,
        });
        continue;
      }
      const params: unknown[] = [];
      const cases = chunk.map(({ row, seq }) => {
        params.push(row.id, seq);
        return 'WHEN ? THEN ?';
      });
      params.push(...chunk.map(({ row }) => row.id));
      statements.push({
        sql: `UPDATE ${table} SET ${q('seq')} = CASE ${q('id')} ${cases.join(' ')} END WHERE ${q('seq')} IS NULL AND ${q('id')} IN (${chunk.map(() => '?').join(', ')})`,
        params,
        expect: chunk.length,
      });
    }
    return statements;
  }

  private nodeStatements(dialect: IntegratorDialect, nodes: readonly HashedNode[], rows: readonly AuditLogEntity[], size: number): Statement[] {
    if (nodes.length === 0) return [];
    const table = escapedTable(this.dataSource, this.dataSource.getMetadata(AuditTreeEntity));
    const q = (name: string) => this.dataSource.driver.escape(name);
    const eventId = (node: HashedNode): string | null => (node.level === 0 ? rows[node.index - size]!.id : null);
    if (dialect === 'postgres') {
      // One statement, one array per column.
      return [
        {
          sql: `INSERT INTO ${table} ("level", "idx", "hash", "event_id") SELECT * FROM unnest($1::int[], $2::bigint[], $3::varchar[], $4::uuid[])`,
          params: [nodes.map((node) => node.level), nodes.map((node) => String(node.index)), nodes.map((node) => node.hash.toString('hex')), nodes.map(eventId)],
        },
      ];
    }
    const statements: Statement[] = [];
    for (let from = 0; from < nodes.length; from += ROWS_PER_STATEMENT) {
      const chunk = nodes.slice(from, from + ROWS_PER_STATEMENT);
      const params: unknown[] = [];
      const values = chunk.map((node) => {
        const offset = params.length;
        params.push(node.level, node.index, node.hash.toString('hex'), eventId(node));
        return `(${placeholders(this.dataSource, 4, offset)})`;
      });
      statements.push({ sql: `INSERT INTO ${table} (${['level', 'idx', 'hash', 'event_id'].map(q).join(', ')}) VALUES ${values.join(', ')}`, params });
    }
    return statements;
  }

  private checkpointStatement(checkpoint: AuditCheckpoint, root: Buffer): Statement {
    const metadata = this.dataSource.getMetadata(AuditCheckpointEntity);
    const table = escapedTable(this.dataSource, metadata);
    const q = (name: string) => this.dataSource.driver.escape(name);
    const createdAt = this.dataSource.driver.preparePersistentValue(new Date(), metadata.findColumnWithPropertyName('createdAt')!) as unknown;
    return {
      sql: `INSERT INTO ${table} (${['tree_size', 'root_hash', 'note', 'created_at'].map(q).join(', ')}) VALUES (${placeholders(this.dataSource, 4, 0)})`,
      params: [checkpoint.treeSize, root.toString('hex'), checkpoint.note, createdAt],
    };
  }
}

interface Plan {
  statements: Statement[];
  /** The events the batch sequences, in seq order. */
  eventIds: string[];
  /** Where the next batch starts: after this id (a full batch), or from the start. */
  after: string | undefined;
  /** The batch read on from a previous one and found the end: the events before it are read again next. */
  restart: boolean;
  sequenced: number;
  treeSizeBefore: number;
  treeSizeAfter: number;
  /** The right edge of the tree of `treeSizeAfter` leaves. */
  frontierAfter: HashedNode[];
  lastCheckpointSize: number | undefined;
  checkpoint?: AuditCheckpoint;
}

/** Events read for a batch, each with its leaf hash or the error that keeps it out of the tree. */
interface ReadEvents {
  rows: AuditLogEntity[];
  leaves: Array<Buffer | Error>;
}

/** The root a checkpoint note signs, when it reads as one. */
function signedRoot(note: string): Buffer | undefined {
  try {
    return checkpointOfNote(note).rootHash;
  } catch {
    return undefined;
  }
}

/** Whether two right edges are the same nodes with the same hashes. */
function sameNodes(a: readonly HashedNode[], b: readonly HashedNode[]): boolean {
  return a.length === b.length && a.every((node, i) => node.level === b[i]!.level && node.index === b[i]!.index && node.hash.equals(b[i]!.hash));
}

/** Whether an event's leaf (or the error that keeps it out of the tree) is `hash`. */
function matches(leaf: Buffer | Error, hash: Buffer): boolean {
  return leaf instanceof Buffer && leaf.equals(hash);
}

function leafOrError({ row, problem }: StoredEvent): Buffer | Error {
  // Text that reads as another value to some reader than to JSON.parse: not signed as found.
  if (problem !== undefined) return new Error(problem);
  try {
    return leafHashOfText(canonicalEventJson(row));
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
