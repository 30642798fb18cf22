import type { DataSource } from 'typeorm';
import { AuditCheckpointEntity } from '../storage/audit-checkpoint.entity.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { bindUtcDates } from '../storage/utc-date.transformer.js';
import type { AuditIntegrityProblem, AuditVerifyResult } from '../interfaces/audit-integrity.interface.js';
import { canonicalEventJson } from './canonical-json.js';
import { checkpointOfNote, type Checkpoint } from './checkpoint-note.js';
import { MAX_REPORTED_PROBLEMS, type AuditLogData, type AuditLogSourceEvent, type AuditLogSourceLeaf, type AuditLogSourceNode } from './log-verifier.js';
import { leafHashOfText } from './merkle.js';
import { PURGE_ACTION } from './purge-record.js';
import { readStoredEvents, type StoredEvent } from './stored-events.js';

/** Rows read per query. */
const PAGE_SIZE = 2_000;

/**
 * Reads an audit log from its database for the verifier: the sequenced events of
 * `audit_log`, the leaves of `audit_tree` and the notes of `audit_checkpoint`, each in
 * ascending order, page by page (keyset pagination on `seq`, `idx` and `tree_size`: no
 * OFFSET, so every page costs the same). Rows are read through the module's entities,
 * so table names follow the data source's `entityPrefix` and `schema`, JSON columns and
 * dates come back as the entities' types, and the same code serves PostgreSQL,
 * MySQL/MariaDB and SQLite.
 *
 * The data source must list the module's entities (`AuditEntities`); its date columns
 * are bound to UTC (`bindUtcDates`) here.
 */
export class DatabaseLogSource {
  /** Stored checkpoints whose columns disagree with their signed note, found by the last {@link checkpoints} walk. */
  checkpointRowProblems: AuditIntegrityProblem[] = [];
  /** Events without a seq that can be sequenced, counted by the last {@link unsequencedProblems} walk. */
  unsequenced = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly pageSize = PAGE_SIZE,
  ) {
    bindUtcDates(dataSource);
  }

  /**
   * Events, stored leaves and stored checkpoints, for `verifyLog`, bounded to the tree as
   * it is when called: the positions up to the larger of the last stored checkpoint's size
   * and the number of stored leaves (read in that order, as the log stores a checkpoint
   * with its leaves). Events past that bound are read too, but only those that have no
   * leaf when read (not sequenced by the log); those the log sequences while the pages are
   * read are left for the next verification. With no tree rows and no checkpoints at all,
   * the bound is 0: every sequenced event is read that has no leaf when read (all of them,
   * in a log emptied by hand), and none the log sequences while verify() reads.
   */
  async data(): Promise<AuditLogData> {
    return this.dataUpTo(await this.treeBound());
  }

  /** {@link data} for a bound read before with {@link treeBound}. */
  dataUpTo(treeBound: number | undefined): AuditLogData {
    // No tree yet is a tree of size 0, not "no bound": the integrator's first batch, committed
    // between the reads of the events and of the leaves, would otherwise read as inserted events.
    const bound = treeBound ?? 0;
    return {
      events: this.events(bound),
      leaves: this.leaves(bound),
      nodes: (level) => this.nodes(level, bound),
      checkpoints: this.checkpoints(bound),
      eventById: (id) => this.eventById(id),
    };
  }

  /** The event with this id, its seq (or none) and its leaf hash as stored now (see `AuditLogData.eventById`). */
  private async eventById(id: string): Promise<{ seq: number | null; leafHash: Buffer } | undefined> {
    const [event] = await readStoredEvents(this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.id = :id', { id }));
    return event && { seq: event.row.seq ?? null, leafHash: eventLeafHash(event.row) };
  }

  /** The size of the tree stored now (see {@link data}); `undefined` when there is none. */
  async treeBound(): Promise<number | undefined> {
    const checkpoint = await this.dataSource
      .getRepository(AuditCheckpointEntity)
      .createQueryBuilder('c')
      .select('c.treeSize', 'size')
      .orderBy('c.treeSize', 'DESC')
      .limit(1)
      .getRawOne<{ size: string | number }>();
    const leaf = await this.dataSource
      .getRepository(AuditTreeEntity)
      .createQueryBuilder('t')
      .select('t.index', 'idx')
      .where('t.level = 0')
      .orderBy('t.index', 'DESC')
      .limit(1)
      .getRawOne<{ idx: string | number }>();
    if (!checkpoint && !leaf) return undefined;
    return Math.max(checkpoint ? Number(checkpoint.size) : 0, leaf ? Number(leaf.idx) + 1 : 0);
  }

  /** The number of sequenced events (up to `seq` `bound`), for progress. */
  async countEvents(bound?: number): Promise<number> {
    const query = this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.seq IS NOT NULL');
    if (bound !== undefined) query.andWhere('e.seq <= :bound', { bound });
    return query.getCount();
  }

  /**
   * Every sequenced event row (after `seq` `from` and up to `seq` `bound`), ascending by
   * `seq`, with its JSON columns read as stored text and checked (see `readStoredEvents`).
   */
  async *eventRows(bound?: number, from?: number): AsyncGenerator<StoredEvent> {
    const repository = this.dataSource.getRepository(AuditLogEntity);
    let after = from;
    for (;;) {
      const query = repository.createQueryBuilder('e').where('e.seq IS NOT NULL');
      if (after !== undefined) query.andWhere('e.seq > :after', { after });
      if (bound !== undefined) query.andWhere('e.seq <= :bound', { bound });
      const rows = await this.wholePage(await readStoredEvents(query.orderBy('e.seq', 'ASC').limit(this.pageSize)));
      yield* rows;
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.row.seq!;
    }
  }

  /**
   * A full page of events with every other row of its last `seq` added: the next page
   * starts after that `seq`, so a row sharing it (which the unique index forbids, but a
   * tampered table may hold) would otherwise never be read.
   */
  private async wholePage(rows: StoredEvent[]): Promise<StoredEvent[]> {
    if (rows.length < this.pageSize) return rows;
    const last = rows[rows.length - 1]!.row.seq!;
    const read = new Set(rows.filter(({ row }) => row.seq === last).map(({ row }) => row.id));
    const same = await readStoredEvents(this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.seq = :last', { last }));
    return [...rows, ...same.filter(({ row }) => !read.has(row.id))];
  }

  /** Every sequenced event (up to `seq` `bound`) with the hash of its canonical JSON, ascending by `seq`. */
  async *events(bound?: number): AsyncGenerator<AuditLogSourceEvent> {
    for await (const event of this.eventRows(bound)) yield sourceEvent(event);
    if (bound === undefined) return;
    // Past the bound: only events without a leaf (a seq the log did not give).
    const events = this.dataSource.getRepository(AuditLogEntity);
    const tree = this.dataSource.getRepository(AuditTreeEntity);
    let after = bound;
    for (;;) {
      const rows = await this.wholePage(
        await readStoredEvents(events.createQueryBuilder('e').where('e.seq > :after', { after }).orderBy('e.seq', 'ASC').limit(this.pageSize)),
      );
      if (rows.length === 0) return;
      // Read after the events: a seq and its leaf are committed together.
      const leaves = await tree
        .createQueryBuilder('t')
        .callListeners(false)
        .select('t.index')
        .where('t.level = 0 AND t.index >= :low AND t.index <= :high', { low: rows[0]!.row.seq! - 1, high: rows[rows.length - 1]!.row.seq! - 1 })
        .getMany();
      const stored = new Set(leaves.map((leaf) => leaf.index));
      for (const event of rows) if (!stored.has(event.row.seq! - 1)) yield sourceEvent(event);
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.row.seq!;
    }
  }

  /**
   * The events without a seq that the integrator cannot sequence, each an `inserted`
   * problem with its id (no seq): a row that cannot be canonicalised (a value JSON cannot
   * carry, such as a number past the double range) or whose JSON columns hold text the
   * module does not write (see `readStoredEvents`). The module never stores such a row,
   * and it would stay out of the tree for ever while the read side shows it. Other events
   * without a seq are the integrator's backlog, not problems: they are counted in
   * {@link unsequenced}. Read in pages by id (the index of unsequenced events).
   */
  async *unsequencedProblems(): AsyncGenerator<AuditIntegrityProblem> {
    this.unsequenced = 0;
    const repository = this.dataSource.getRepository(AuditLogEntity);
    let after: string | undefined;
    for (;;) {
      const query = repository.createQueryBuilder('e').where('e.seq IS NULL');
      if (after !== undefined) query.andWhere('e.id > :after', { after });
      const rows = await readStoredEvents(query.orderBy('e.id', 'ASC').limit(this.pageSize));
      for (const { row, problem } of rows) {
        const why = problem ?? canonicalisationProblem(row);
        if (why !== undefined) {
          yield { kind: 'inserted', id: row.id, message: `event ${row.id} has no seq and cannot be sequenced (${why}): it was not stored by the module` };
        } else {
          this.unsequenced++;
        }
      }
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.row.id;
    }
  }

  /** Every stored leaf (level 0 of `audit_tree`, from index `from` and below index `bound`), ascending by index. */
  async *leaves(bound?: number, from?: number): AsyncGenerator<AuditLogSourceLeaf> {
    const repository = this.dataSource.getRepository(AuditTreeEntity);
    let after = from === undefined ? undefined : from - 1;
    for (;;) {
      const query = repository.createQueryBuilder('t').where('t.level = 0');
      if (after !== undefined) query.andWhere('t.index > :after', { after });
      if (bound !== undefined) query.andWhere('t.index < :bound', { bound });
      const rows = await query.callListeners(false).orderBy('t.index', 'ASC').limit(this.pageSize).getMany();
      for (const row of rows) yield { index: row.index, hash: storedHash(row.hash), eventId: row.eventId };
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.index;
    }
  }

  /** The stored inner nodes of one level (whose leaves are all below index `bound`), ascending by index. */
  async *nodes(level: number, bound?: number): AsyncGenerator<AuditLogSourceNode> {
    const repository = this.dataSource.getRepository(AuditTreeEntity);
    const below = bound === undefined ? undefined : Math.floor(bound / 2 ** level);
    let after: number | undefined;
    for (;;) {
      // Raw rows (two columns, no entity to build): there are about as many inner nodes as leaves.
      const query = repository.createQueryBuilder('t').select('t.index', 'idx').addSelect('t.hash', 'hash').where('t.level = :level', { level });
      if (after !== undefined) query.andWhere('t.index > :after', { after });
      if (below !== undefined) query.andWhere('t.index < :below', { below });
      const rows = await query.orderBy('t.index', 'ASC').limit(this.pageSize).getRawMany<{ idx: string | number; hash: string }>();
      for (const row of rows) yield { index: Number(row.idx), hash: storedHash(row.hash) };
      if (rows.length < this.pageSize) return;
      after = Number(rows[rows.length - 1]!.idx);
    }
  }

  /**
   * Every stored checkpoint note (of size up to `bound`), ascending by tree size. A row
   * whose `tree_size` or `root_hash` column is not what its note says (the note is what is
   * checked; the columns are copies) is kept in {@link checkpointRowProblems}.
   */
  async *checkpoints(bound?: number): AsyncGenerator<string> {
    const repository = this.dataSource.getRepository(AuditCheckpointEntity);
    this.checkpointRowProblems = [];
    let after: number | undefined;
    for (;;) {
      const query = repository.createQueryBuilder('c').select(['c.treeSize', 'c.rootHash', 'c.note']).where('1 = 1');
      if (after !== undefined) query.andWhere('c.treeSize > :after', { after });
      if (bound !== undefined) query.andWhere('c.treeSize <= :bound', { bound });
      const rows = await query.callListeners(false).orderBy('c.treeSize', 'ASC').limit(this.pageSize).getMany();
      for (const row of rows) {
        this.checkColumns(row);
        yield row.note;
      }
      if (rows.length < this.pageSize) return;
      after = rows[rows.length - 1]!.treeSize;
    }
  }

  private checkColumns(row: AuditCheckpointEntity): void {
    let signed: Checkpoint;
    try {
      signed = checkpointOfNote(row.note);
    } catch {
      return; // A note that is no checkpoint: the verifier reports it.
    }
    let column: string | undefined;
    if (signed.treeSize !== BigInt(row.treeSize)) column = `tree_size column (${row.treeSize}) is not the tree size of its signed note (${signed.treeSize})`;
    else if (row.rootHash.toLowerCase() !== signed.rootHash.toString('hex')) column = 'root_hash column is not the root of its signed note';
    if (column === undefined || this.checkpointRowProblems.length >= MAX_REPORTED_PROBLEMS) return;
    this.checkpointRowProblems.push({
      kind: 'modified',
      treeSize: row.treeSize,
      message: `checkpoint ${row.treeSize}'s ${column}: the audit_checkpoint row was altered (the note is what is checked)`,
    });
  }

  /**
   * The signed purge records: the notes the retention purge keeps in its
   * `audit.purged` events (a handful; read by the action index).
   */
  async purgeNotes(): Promise<string[]> {
    const rows = await this.dataSource
      .getRepository(AuditLogEntity)
      .createQueryBuilder('e')
      .callListeners(false)
      .select(['e.id', 'e.context'])
      .where('e.action = :action', { action: PURGE_ACTION })
      .getMany();
    return rows.flatMap((row) => {
      const note = (row.context as { note?: unknown } | null)?.note;
      return typeof note === 'string' ? [note] : [];
    });
  }

  /** One event by id, sequenced or not, with its JSON columns read as stored text and checked. */
  async findEvent(id: string): Promise<StoredEvent | undefined> {
    const [event] = await readStoredEvents(this.dataSource.getRepository(AuditLogEntity).createQueryBuilder('e').where('e.id = :id', { id }));
    return event;
  }
}

/** An event as the verifier reads it; a row whose JSON text the module did not write hashes to nothing. */
function sourceEvent({ row, problem }: StoredEvent): AuditLogSourceEvent {
  return { seq: row.seq!, id: row.id, leafHash: problem === undefined ? eventLeafHash(row) : Buffer.alloc(0) };
}

/** Why a row cannot be canonicalised, or `undefined` when it can. */
function canonicalisationProblem(row: AuditLogEntity): string | undefined {
  try {
    canonicalEventJson(row);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * `result` with the events of `source` without a seq added: those that cannot be sequenced
 * as problems (see `DatabaseLogSource.unsequencedProblems`), kept in the result's order and
 * within {@link MAX_REPORTED_PROBLEMS}, and the others counted as `unsequenced`; and the
 * checkpoint rows whose columns disagree with their note (`checkpointRowProblems`), in
 * order of tree size.
 */
export async function withUnsequencedProblems(result: AuditVerifyResult, source: DatabaseLogSource): Promise<AuditVerifyResult> {
  const added: AuditIntegrityProblem[] = [];
  let truncated = result.truncatedReport === true;
  for await (const problem of source.unsequencedProblems()) {
    // Past a full report, read on: the events without a seq are counted to the end.
    if (result.problems.length + added.length >= MAX_REPORTED_PROBLEMS) truncated = true;
    else added.push(problem);
  }
  const pending = source.unsequenced;
  // A checkpoint already reported (its note replaced, its signature bad) is one problem, not two.
  const reported = new Set(result.problems.filter((problem) => problem.treeSize !== undefined && problem.kind !== 'truncated').map((problem) => problem.treeSize));
  const columns = source.checkpointRowProblems.filter((problem) => !reported.has(problem.treeSize));
  const rows = columns.slice(0, Math.max(0, MAX_REPORTED_PROBLEMS - result.problems.length - added.length));
  if (rows.length < columns.length) truncated = true;
  if (added.length === 0 && rows.length === 0 && !truncated && pending === 0) return result;
  // Unsequenced events have no seq: they come first, as problems without seq or tree size do.
  const problems = rows.length === 0 ? result.problems : [...result.problems, ...rows].sort((a, b) => (a.seq ?? a.treeSize ?? 0) - (b.seq ?? b.treeSize ?? 0));
  const out: AuditVerifyResult = added.length === 0 && rows.length === 0 ? { ...result } : { ...result, ok: false, problems: [...added, ...problems] };
  if (truncated) out.truncatedReport = true;
  if (pending > 0) out.unsequenced = pending;
  return out;
}

/** The leaf hash of a row as stored now; empty (matching nothing) when the row cannot be canonicalised. */
export function eventLeafHash(row: AuditLogEntity): Buffer {
  try {
    return leafHashOfText(canonicalEventJson(row));
  } catch {
    return Buffer.alloc(0);
  }
}

/** A stored hex hash; text that is not 64 hex digits becomes bytes that match no hash. */
function storedHash(hex: string): Buffer {
  return /^[0-9a-f]{64}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.from(`not a hash: ${hex}`, 'utf8');
}
