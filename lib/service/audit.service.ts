import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { DataSource, Repository, SelectQueryBuilder } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { resolveTarget } from '../events/audit-target.js';
import { AuditDataSources } from '../capture/audit-data-sources.js';
import { ChangeCapture } from '../capture/change-capture.js';
import { AuditContext } from '../context/audit-context.js';
import { currentTransactionManager } from '../context/async-frame.js';
import { UnitOfWork, type PendingIntent } from '../context/unit-of-work.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { UnitEvents } from '../events/unit-events.js';
import { bound, storedId } from '../events/json-safe.js';
import { uuidv7 } from '../events/uuid-v7.js';
import { InvalidAuditEventError } from '../exceptions/invalid-audit-event.error.js';
import { InvalidAuditQueryError } from '../exceptions/invalid-audit-query.error.js';
import type { AuditActor, AuditEvent, AuditTarget } from '../interfaces/audit-event.interface.js';
import type {
  AuditExportOptions,
  AuditExportQuery,
  AuditLogInput,
  AuditLogOptions,
  AuditPage,
  AuditPurgeOptions,
  AuditPurgeResult,
  AuditQuery,
  AuditRunOptions,
  AuditTargetInput,
} from '../interfaces/audit-service.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditSubjectEntity } from '../storage/audit-subject.entity.js';
import { escapedTable } from '../storage/sql.js';
import { validateAuditActor, validateAuditLogInput } from './audit-log.input.js';
import { AuditRecorder } from './audit-recorder.js';
import { AuditIntegrator } from '../integrity/integrator.js';
import { IntegrityProofs } from '../integrity/integrity-proofs.js';
import { AuditPurger } from '../retention/audit-purger.js';
import type {
  AuditCheckpoint,
  AuditConsistencyProof,
  AuditInclusionProof,
  AuditVerifyOptions,
  AuditVerifyResult,
} from '../interfaces/audit-integrity.interface.js';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import { DatabaseLogSource, withUnsequencedProblems } from '../integrity/database-log-source.js';
import { mergeCheckpoints, verifyLog } from '../integrity/log-verifier.js';
import { splitPurgeNotes } from '../integrity/purge-record.js';
import { auditExportStream, exportFormat } from '../read/audit-export.js';
import { exactMatch, filtersAnything, targetTypes, whereAuditQuery, type AuditQueryScope } from '../read/audit-query.js';
import { afterPosition, readEvents, type ReadPosition } from '../read/read-events.js';

const DEFAULT_PAGE = 50;
const MAX_PAGE = 1000;

/**
 * Manual audit events, jobs run as an actor, and queries over the audit trail.
 *
 * @example
 * await this.audit.log({ action: 'order.shipped', target: order, reason: 'carrier pickup' });
 * await this.audit.runAs({ type: 'system', id: 'expirer' }, () => this.orders.expireStale());
 * const { items, nextCursor } = await this.audit.find({ actorId: '42', limit: 20 });
 */
@Injectable()
export class AuditService {
  private readonly logger = new Logger('Audit');

  constructor(
    private readonly context: AuditContext,
    private readonly recorder: AuditRecorder,
    private readonly builder: AuditEventBuilder,
    private readonly capture: ChangeCapture,
    private readonly events: UnitEvents,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    private readonly dataSources: AuditDataSources,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly integrator: AuditIntegrator,
    private readonly proofs: IntegrityProofs,
    private readonly purger: AuditPurger,
  ) {}

  /**
   * Sequences every stored event now (gives it its `seq` and its leaf in the Merkle tree)
   * and returns a signed checkpoint of the whole tree, also handed to `integrity.anchor`
   * when it is new. The background integrator does the same every `sequenceEvery` ms and
   * signs a checkpoint every `checkpointEvery`.
   * @throws AuditIntegrityError without `integrity`, or when the stored tree does not
   *   extend the last checkpoint (it was altered: nothing is signed over it).
   */
  checkpoint(): Promise<AuditCheckpoint> {
    return this.integrator.checkpoint();
  }

  /**
   * The inclusion proof of one event: `{ id, seq, leafIndex, treeSize, leafHash, path,
   * checkpoint }` (hashes base64), checkable offline with `verifyInclusion(proof,
   * publicKey)` or `npx nestjs-system-audit verify-proof`.
   * @throws AuditIntegrityError without `integrity`, for an unknown id, or when the event
   *   no longer matches its leaf.
   */
  prove(id: string): Promise<AuditInclusionProof> {
    return this.proofs.prove(id);
  }

  /**
   * The consistency proof between two checkpoints (tree sizes, checkpoints or notes),
   * checkable offline with `verifyConsistency(older, newer, proof, publicKey)`: the newer
   * tree extends the older one, nothing in it was changed or removed.
   */
  proveConsistency(older: number | AuditCheckpoint | string, newer: number | AuditCheckpoint | string): Promise<AuditConsistencyProof> {
    return this.proofs.proveConsistency(older, newer);
  }

  /**
   * Checks the whole trail against its Merkle tree and signed checkpoints, streaming in
   * constant memory: every sequenced event is hashed again and compared with its leaf, and
   * the tree with every checkpoint (stored, and `options.checkpoints` kept outside the
   * database, e.g. the anchor's file). Returns `{ ok, treeSize, problems: [{ kind, seq?,
   * id?, treeSize?, message }] }`, kinds `modified`, `missing`, `inserted`, `reordered`,
   * `bad-signature`, `inconsistent`, `truncated`.
   * @throws AuditIntegrityError without `integrity` and without `options.publicKeys`.
   */
  async verify(options: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
    if (options === null || typeof options !== 'object') throw new AuditIntegrityError('verify() takes an options object { publicKeys?, checkpoints?, onProgress? }');
    const publicKeys = options.publicKeys ?? this.options.integrity?.publicKeys;
    if (!publicKeys || publicKeys.length === 0) {
      throw new AuditIntegrityError('verify() needs the public keys checkpoints are signed with: configure `integrity` or pass { publicKeys }');
    }
    if (options.checkpoints !== undefined && (!Array.isArray(options.checkpoints) || options.checkpoints.some((note) => typeof note !== 'string'))) {
      throw new AuditIntegrityError('verify(): `checkpoints` must be an array of signed checkpoint notes (see readCheckpointsFile)');
    }
    const source = new DatabaseLogSource(this.dataSource);
    // The purge records first: each was signed over a tree the bound read next reaches.
    const stored = await source.purgeNotes();
    const bound = await source.treeBound();
    const data = source.dataUpTo(bound);
    const total = options.onProgress ? await source.countEvents(bound) : 0;
    // External notes (the anchor's file) may hold purge records too.
    const external = splitPurgeNotes(options.checkpoints ?? []);
    const result = await verifyLog({
      ...data,
      checkpoints: mergeCheckpoints(data.checkpoints, external.checkpoints),
      purges: [...stored, ...external.purges],
      publicKeys,
      total,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return withUnsequencedProblems(result, source);
  }

  /**
   * Records a manual `intent` event and returns its id.
   *
   * Inside a unit of work (a request, a `runAs` call, an `@Audited` method) the event
   * joins the unit and is stored when the unit ends, before the response is sent or
   * `runAs` returns; with a `target`, it claims that resource's changes in the unit,
   * made before or after the call. The promise resolves once the event is accepted
   * (awaiting storage there would deadlock a handler on its own unit).
   *
   * Outside any unit of work (or in late work) but inside a transaction (a `transaction()`
   * callback, or the transaction of `options.manager`), the event is written in that
   * transaction when it commits, claiming its target's changes there; a rollback discards it. Elsewhere it is
   * stored before the promise resolves, as the `system`'s unless `actor` says otherwise
   * (also when it runs after its request's unit ended: a timer, an un-awaited promise —
   * then with that request's id as `context.originRequestId`).
   *
   * A long `reason`, `actor.id`, `actor.display` or `target.id` (text a user may choose) is
   * cut when stored, as `@Audited` cuts it, never refused; an id with a digest of the whole,
   * so that `find()` and `history()` find it by the id given.
   *
   * @throws InvalidAuditEventError when the input is invalid (nothing is written): no or a
   * malformed `action`, a value of the wrong type, an empty `actor.type` or `target.id`, an
   * `actor.type` past 64 characters or a `target.type` past 128.
   * @throws AuditWriteError outside a unit of work, when storing fails (fail-closed).
   */
  async log(input: AuditLogInput, options: AuditLogOptions = {}): Promise<string> {
    const intent = this.intentFrom(input);
    if (options === null || typeof options !== 'object') {
      throw new InvalidAuditEventError([{ field: 'options', problems: ['must be an object such as { manager }'] }]);
    }
    if (!this.options.enabled) return intent.id;
    const current = this.context.current();
    if (current?.isLive) {
      current.intents.push(intent);
      return intent.id;
    }
    // Work left running after its unit ended is the system's, not the request's user's.
    const late = current?.lateUnit();
    // Inside a transaction: written in it, claiming its target's changes there.
    const given = options.manager;
    const manager = given?.queryRunner?.isReleased ? undefined : given; // a transaction that is over: written at once
    const runner = (manager ?? currentTransactionManager())?.queryRunner;
    if (runner && !runner.isReleased && this.capture.logInTransaction(runner, intent, late)) return intent.id;
    await this.recorder.storeNow(this.events.intentEvents(intent, late, intent.actor ?? { type: 'system' }), manager);
    return intent.id;
  }

  /**
   * Runs `fn` as a unit of work with `actor` and a source (default `job`), stores the
   * unit's events and unclaimed changes when `fn` settles, and returns `fn`'s result.
   * Called after its request's unit ended (a timer, an un-awaited promise), the unit's
   * events carry that request's id as `context.originRequestId`; so do those of a call
   * not awaited that is still running when the request's unit ends, from then on.
   *
   * @example
   * await audit.runAs(request.actor, () => this.mailer.send(order), { requestId: request.requestId });
   * @throws InvalidAuditEventError when `actor` is invalid.
   * @throws AuditWriteError when storing fails (fail-closed); `fn`'s own error wins if it threw.
   */
  async runAs<T>(actor: AuditActor, fn: () => T | Promise<T>, options: AuditRunOptions = {}): Promise<T> {
    const problems = validateAuditActor(actor);
    if (problems.length) throw new InvalidAuditEventError(problems);
    if (typeof fn !== 'function') throw new InvalidAuditEventError([{ field: 'fn', problems: ['must be a function'] }]);
    const normalisedActor = this.actorFrom(actor)!;
    const current = this.context.current();
    const unit = new UnitOfWork(
      {
        source: options.source ?? 'job',
        actor: normalisedActor,
        request: {
          ...options.request,
          requestId: bound(options.requestId ?? options.request?.requestId, 128) ?? uuidv7(),
        },
        // Started after the current unit stopped taking events (late work): not its child.
        parent: current?.isLive ? current : undefined,
        // Left running after it stopped taking events (not awaited): late work of its request.
        outlived: 'own',
      },
      current?.originForOpened,
    );
    unit.beginHandler(undefined, undefined);
    return this.context.run(unit, async () => {
      let result: T;
      try {
        result = await fn();
      } catch (error) {
        await this.recorder.end(unit).catch(() => undefined); // already logged; fn's error wins
        throw error;
      }
      await this.recorder.end(unit);
      return result;
    });
  }

  /**
   * Events matching `query`, newest first, one page at a time.
   *
   * With `pseudonymize` on, a clear `actorId` is mapped to its pseudonym, which needs the
   * actor's type (`actorType`); an id that starts with `hmac:` is taken as a pseudonym as
   * it is. A clear id whose key is gone (erased) matches nothing.
   *
   * A row changed by hand with SQL (`verify()` reports it as `modified`) is returned as far
   * as it can be read, never failing the page: a JSON column holding text that is not JSON
   * reads as absent (`changes: []`), an `occurred_at` that is no time as an invalid `Date`,
   * and the event's `unreadable` holds each such field as the database stores it. Its
   * cursor goes on in the database's order (`occurred_at` descending, then id), also after
   * a time the database sorts apart from its instant (the cursor then holds the row's
   * stored time, and the next page compares with it — also once that row is gone).
   * @throws InvalidAuditQueryError for a filter it cannot use (also a clear `actorId`
   * without `actorType` when actor ids are pseudonymised).
   */
  async find(query: AuditQuery = {}): Promise<AuditPage> {
    if (query === null || typeof query !== 'object' || Array.isArray(query)) {
      throw new InvalidAuditQueryError('query', 'must be an object such as { actorId: "42" }');
    }
    const limit = query.limit ?? DEFAULT_PAGE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
      throw new InvalidAuditQueryError('limit', `must be a whole number from 1 to ${MAX_PAGE}`);
    }
    const qb = this.repository.createQueryBuilder('e');
    whereAuditQuery(qb, query, this.queryScope, true);
    const filters = filtersFingerprint(qb);
    if ((query.cursor as unknown) === null) {
      throw new InvalidAuditQueryError('cursor', 'is null: the page it came from was the last one (its nextCursor is null); leave cursor out to start from the first page');
    }
    if (query.cursor !== undefined) afterPosition(qb, decodeCursor(query.cursor, filters), 'older');
    const rows = await readEvents(qb.orderBy('e.occurredAt', 'DESC').addOrderBy('e.id', 'DESC').take(limit + 1), this.builder);
    const items = rows.slice(0, limit).map((row) => row.event);
    const last = rows[limit - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.position, filters) : null };
  }

  /**
   * Every event matching `query` (the filters of `find()`, without `limit` and `cursor`)
   * as a stream of UTF-8 text, read a page of 1,000 rows at a time and only as fast as
   * the consumer takes it: memory stays constant whatever the size of the trail. An
   * error of the database destroys the stream with that error.
   *
   * - `jsonl` (default): one event per line, the canonical JSON its Merkle leaf hashes
   *   plus `seq` (exactly what `exportEventLine` writes; `"seq":null` for an event not
   *   sequenced yet). Ascending `(occurredAt, id)`; with `integrity` on and no filter,
   *   ascending `seq` then the events not sequenced yet, so the export of the whole trail
   *   checks against the signed checkpoints with `npx nestjs-system-audit verify --events`.
   * - `csv`: a header row, then one record per event, ascending `(occurredAt, id)`; a
   *   cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
   *   leading `'` so that a spreadsheet does not run it as a formula.
   *
   * A row that cannot be written as it is stored (a JSON column holding text the module
   * does not write, or a value JSON cannot carry; the module never stores one) is left out:
   * the stream emits `'skipped'` with its `AuditExportSkipped`, and a warning is logged.
   *
   * @example
   * await pipeline(audit.export({ actorId: '42', from: '2026-01-01' }, { format: 'csv' }), response);
   * @throws InvalidAuditQueryError for a filter or format it cannot use (at once, before any row is read).
   */
  export(query: AuditExportQuery = {}, options: AuditExportOptions = {}): Readable {
    if (options === null || typeof options !== 'object') throw new InvalidAuditQueryError('options', 'must be an object such as { format: "csv" }');
    const format = exportFormat(options.format);
    if (query !== null && typeof query === 'object') {
      for (const field of ['limit', 'cursor'] as const) {
        if ((query as Record<string, unknown>)[field] !== undefined) {
          throw new InvalidAuditQueryError(field, 'does not apply to export(), which streams every matching event (page with find())');
        }
      }
    }
    const qb = this.repository.createQueryBuilder('e');
    whereAuditQuery(qb, query, this.queryScope);
    const order = format === 'jsonl' && this.options.integrity && !filtersAnything(query) ? 'seq' : 'time';
    return auditExportStream({ dataSource: this.dataSource, query: qb, order, format }, (skipped) => {
      this.logger.warn(`Audit export: event ${skipped.id}${skipped.seq === null ? '' : ` (seq ${skipped.seq})`} left out: ${skipped.reason}`);
    });
  }

  /**
   * Removes the events that occurred before `before`, in batches of `batchSize` (one short
   * transaction each: the only path through the append-only guards), and records the purge
   * as an `audit.purged` event (`context`: `before`, `events`, and with integrity the range
   * and the signed record), attributed like `log()`. The `retention` option runs it on a
   * schedule.
   *
   * With `integrity` on, the purge removes a prefix of the sequence: events 1 to N, N being
   * the last `seq` before the first event that is not older than `before` (an older event
   * sequenced after a newer one waits for a later purge). Every event is sequenced and a
   * checkpoint signed first; then a signed purge record (a checkpoint note of the tree at
   * N carrying its right edge) is stored in the `audit.purged` event and handed to
   * `anchor`. The tree's rows stay, so `verify()` still checks every checkpoint, and an
   * export plus the checkpoints file verifies from the record on. A purge that stops half
   * way is finished by the next one. Each event up to N is first hashed and compared with
   * its signed leaf: the purge stops before the first one whose row is missing or was
   * changed (`stoppedAt` names it, and the error is logged), so that no purge record
   * covers a change. Times are compared as instants (SQLite's text with an offset too).
   *
   * @example
   * await audit.purge({ before: new Date(Date.now() - 400 * 86_400_000) });
   * @throws InvalidAuditQueryError for a bad option (`before` missing, invalid or in the future).
   * @throws AuditIntegrityError when the tree cannot be checkpointed (it was altered) or the
   *   integrator's lock stays taken.
   */
  async purge(options: AuditPurgeOptions): Promise<AuditPurgeResult> {
    return this.purger.purge(options);
  }

  /**
   * The actor id `audit_log` stores for `actor`: with `pseudonymize` on, its pseudonym
   * (`hmac:…`), or `null` when that actor's key is gone (erased); otherwise the id as
   * given. For support staff asked "what did this person do": the stored id finds their
   * events in `find({ actorId })` or in SQL.
   *
   * @example
   * const id = audit.pseudonymOf({ type: 'user', id: '42' }); // 'hmac:3q2-…'
   * @throws InvalidAuditQueryError when `actor` is not `{ type, id }`.
   */
  pseudonymOf(actor: { type: string; id: string | number }): string | null {
    if (actor === null || typeof actor !== 'object') {
      throw new InvalidAuditQueryError('actor', 'must be an object such as { type: "user", id: "42" }');
    }
    if (typeof actor.type !== 'string' || actor.type.length === 0) {
      throw new InvalidAuditQueryError('actor.type', 'must be a non-empty string such as "user"');
    }
    if ((typeof actor.id !== 'string' && typeof actor.id !== 'number') || actor.id === '') {
      throw new InvalidAuditQueryError('actor.id', 'must be a non-empty string or a number');
    }
    const pseudonymizer = this.options.pseudonymizer;
    return pseudonymizer ? pseudonymizer.pseudonym(actor.type, String(actor.id)) : String(actor.id);
  }

  /**
   * The events about one resource (`{ type, id }` or an entity instance), oldest first:
   * those whose target it is, and those whose `changes` touch it without naming it as
   * target — a change of it, or a many-to-many link to it recorded on the other entity
   * (an article's history shows the favourites recorded on the user's side). Each event
   * once. Every such event unless `limit` caps how many (the oldest `limit`): they are read
   * a page of 1,000 at a time, but returned in one array — for a resource with a very long
   * history, `limit` or `export({ target })` (a stream) keep memory bounded. A row changed
   * by hand is returned as `find()` returns it (see `unreadable`).
   * @throws InvalidAuditQueryError when the target cannot be identified.
   */
  async history(target: AuditTargetInput, options: { limit?: number } = {}): Promise<AuditEvent[]> {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new InvalidAuditQueryError('options', 'must be an object such as { limit: 100 }');
    }
    for (const key of Object.keys(options)) {
      if (key !== 'limit') throw new InvalidAuditQueryError(key, 'is not an option of history() (it takes limit)');
    }
    const limit = options.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
      throw new InvalidAuditQueryError('limit', 'must be a whole number of at least 1 (or left out: every event)');
    }
    const { type, id } = this.targetFrom(target, 'target');
    const events: AuditEvent[] = [];
    let after: ReadPosition | undefined;
    for (;;) {
      const want = limit === undefined ? MAX_PAGE : Math.min(MAX_PAGE, limit - events.length);
      const qb = this.repository.createQueryBuilder('e').where(`e.id IN (${this.eventsAbout()})`, { historyTypes: targetTypes(this.dataSources.all, type), historyId: storedId(id) });
      // Keyset: the next page starts after the last event read, in (occurredAt, id) order.
      if (after) afterPosition(qb, after, 'newer');
      const rows = await readEvents(qb.orderBy('e.occurredAt', 'ASC').addOrderBy('e.id', 'ASC').take(want), this.builder);
      for (const row of rows) events.push(row.event);
      if (rows.length < want || (limit !== undefined && events.length >= limit)) return events;
      after = rows[rows.length - 1]!.position;
    }
  }

  private aboutSql?: string;

  /**
   * The ids of the events about `:...historyTypes` / `:historyId`: by `audit_log`'s target
   * index, and by `audit_subject`. A union inside a derived table, so that every database
   * reads both indexes and joins the ids to the events by primary key (MySQL and MariaDB
   * would run an `IN (… UNION …)` once per event of the table).
   */
  private eventsAbout(): string {
    if (this.aboutSql) return this.aboutSql;
    const driver = this.dataSource.driver;
    const log = this.dataSource.getMetadata(AuditLogEntity);
    const subject = this.dataSource.getMetadata(AuditSubjectEntity);
    const column = (metadata: typeof log, property: string): string =>
      driver.escape(metadata.findColumnWithPropertyName(property)!.databaseName);
    const equals = exactMatch(this.dataSource);
    return (this.aboutSql =
      `SELECT ${driver.escape('h')}.${driver.escape('event_id')} FROM (` +
      `SELECT ${column(log, 'id')} AS ${driver.escape('event_id')} FROM ${escapedTable(this.dataSource, log)} ` +
      `WHERE ${column(log, 'targetType')} IN (:...historyTypes) AND ${equals(column(log, 'targetId'), 'historyId')} ` +
      `UNION ALL SELECT ${column(subject, 'eventId')} FROM ${escapedTable(this.dataSource, subject)} ` +
      `WHERE ${column(subject, 'subjectType')} IN (:...historyTypes) AND ${equals(column(subject, 'subjectId'), 'historyId')}` +
      `) ${driver.escape('h')}`);
  }

  private get queryScope(): AuditQueryScope {
    return {
      dataSource: this.dataSource,
      pseudonymizer: this.options.pseudonymizer,
      resolveTarget: (target, field) => this.targetFrom(target, field),
      targetTypes: (type) => targetTypes(this.dataSources.all, type),
    };
  }

  private get repository(): Repository<AuditLogEntity> {
    return this.dataSource.getRepository(AuditLogEntity);
  }

  /** Validates and normalises manual input into a pending intent. */
  private intentFrom(input: AuditLogInput): PendingIntent {
    if (input === null || typeof input !== 'object') {
      throw new InvalidAuditEventError([{ field: 'input', problems: ['must be an object such as { action: "order.updated" }'] }]);
    }
    let target: AuditTarget | undefined;
    try {
      target = input.target === undefined ? undefined : resolveTarget(this.dataSources.all, input.target);
    } catch (error) {
      throw new InvalidAuditEventError([{ field: 'target', problems: [(error as Error).message] }]);
    }
    const problems = validateAuditLogInput({ ...input, ...(target ? { target } : {}) } as Record<string, unknown>);
    let context: Record<string, unknown> | undefined;
    if (input.context !== undefined && problems.every((p) => p.field !== 'context')) {
      const measured = this.builder.measureContext(input.context);
      if (measured.bytes > this.options.maxContextBytes) {
        problems.push({ field: 'context', problems: [`is ${measured.bytes} bytes of JSON; the limit is ${this.options.maxContextBytes}`] });
      }
      // The context as stored, taken now: a change the caller makes afterwards is not recorded.
      context = measured.safe;
    }
    if (problems.length) throw new InvalidAuditEventError(problems);
    const at = Date.now();
    return {
      id: uuidv7(at),
      occurredAt: new Date(at),
      action: input.action,
      outcome: input.outcome ?? 'success',
      actor: this.actorFrom(input.actor),
      target,
      context,
      reason: input.reason,
      changes: input.changes,
      claim: target ? 'target' : 'none',
    };
  }

  private actorFrom(actor: AuditLogInput['actor']): AuditActor | undefined {
    if (!actor) return undefined;
    return {
      type: actor.type,
      ...(actor.id !== undefined && actor.id !== null ? { id: String(actor.id) } : {}),
      ...(actor.display !== undefined ? { display: actor.display } : {}),
    };
  }

  private targetFrom(target: AuditTargetInput, field: string): AuditTarget {
    try {
      return resolveTarget(this.dataSources.all, target);
    } catch (error) {
      throw new InvalidAuditQueryError(field, (error as Error).message);
    }
  }
}

/**
 * What a cursor is bound to: a digest of the query's filters as SQL (the statement and its
 * parameters), so that the same filters written another way (`actor: { id }` or
 * `actorId`) match and other filters do not.
 */
function filtersFingerprint(qb: SelectQueryBuilder<AuditLogEntity>): string {
  const [sql, parameters] = qb.getQueryAndParameters();
  return createHash('sha256').update(JSON.stringify([sql, parameters])).digest('base64url').slice(0, 22);
}

/**
 * What a cursor holds in place of a time when the position is its event's stored time (a
 * row changed by hand whose time cannot be given back as one: see {@link ReadPosition}),
 * followed by that stored value after the filters.
 */
const STORED_TIME = 'stored';

/** A cursor: the position after an event (its time, or {@link STORED_TIME}, and id) in the query of `filters`. */
function encodeCursor(position: ReadPosition, filters: string): string {
  const parts = position.time === undefined ? [STORED_TIME, position.id, filters, position.stored] : [position.time, position.id, filters];
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

/**
 * The position of a cursor of {@link encodeCursor}, checked: exactly the text find() wrote
 * (nothing added), a time as find() writes it (or a stored value), and the filters it was
 * given for.
 * @throws InvalidAuditQueryError otherwise.
 */
function decodeCursor(cursor: string, filters: string): ReadPosition {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    // refused below
  }
  const parts = Array.isArray(value) ? (value as unknown[]) : [];
  const stored = parts[0] === STORED_TIME && parts.length === 4 && (typeof parts[3] === 'string' || (typeof parts[3] === 'number' && Number.isFinite(parts[3])));
  const valid =
    (stored || (parts.length === 3 && typeof parts[0] === 'string' && isIsoTime(parts[0]))) &&
    typeof parts[1] === 'string' &&
    typeof parts[2] === 'string' &&
    Buffer.from(JSON.stringify(value)).toString('base64url') === cursor &&
    EVENT_ID.test(parts[1]);
  if (!valid) throw new InvalidAuditQueryError('cursor', 'is not a cursor returned by find()');
  const [at, id, given] = parts as [string, string, string];
  if (given !== filters) {
    throw new InvalidAuditQueryError('cursor', 'was returned by find() for other filters: a cursor continues the query it came from (start again without one)');
  }
  return stored ? { stored: parts[3] as string | number, id } : { time: at, id };
}

/** An event id as the module writes it (a lower-case UUID). */
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `text` is a time as `Date.toISOString()` writes it. */
function isIsoTime(text: string): boolean {
  const time = Date.parse(text);
  return !Number.isNaN(time) && new Date(time).toISOString() === text;
}
