import type { DataSource, QueryRunner } from 'typeorm';
import type {
  AuditActor,
  AuditChange,
  AuditError,
  AuditOutcome,
  AuditRequestInfo,
  AuditTarget,
} from '../interfaces/audit-event.interface.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import { ChangeSet, type CapturedChange } from '../capture/change-set.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';
import { uuidv7 } from '../events/uuid-v7.js';

/** Where an actor comes from: a fixed value or a resolver called when events are built. */
export type ActorSource =
  | AuditActor
  | (() => AuditActor | null | undefined | Promise<AuditActor | null | undefined>);

/** An intent event waiting for its unit of work to end. */
export interface PendingIntent {
  id: string;
  occurredAt: Date;
  action: string;
  outcome: AuditOutcome;
  actor?: AuditActor;
  target?: AuditTarget;
  context?: Record<string, unknown>;
  reason?: string;
  error?: AuditError;
  /** Changes given explicitly by the caller. */
  changes?: AuditChange[];
  /** Which pending changes the event takes: all of them, those of its target, or none. */
  claim: 'all' | 'target' | 'none';
  /** The event's own source and request data, when they differ from its unit's. */
  source?: string;
  request?: AuditRequestInfo;
  /** The handler's own event (one per unit), as opposed to manual `log()` events. */
  handler?: boolean;
}

/** An `@Audited` call inside a request that may still be turned away by a guard. */
export interface PendingCall {
  audited: AuditedMetadata;
  source: string;
  request: AuditRequestInfo;
  /** Where the call's result or error sits in the response (GraphQL: the field's response key). */
  responseKey?: string;
  /** What `recordBody` stores for the call (GraphQL: the operation and its variables). */
  body?: unknown;
}

/** A transaction of the unit whose COMMIT failed in flight: its journal rows tell whether it committed. */
export interface UncertainCommit {
  ids: string[];
  spilledIds: string[];
  changes: CapturedChange[];
  /** The data source whose journal holds the rows. */
  dataSource: DataSource;
}

export interface UnitOfWorkInit {
  source: string;
  actor?: ActorSource;
  request?: AuditRequestInfo;
  requestObject?: AuditRequest;
  /** What `recordBody` stores, when the transport decides it (see `UnitOfWork.body`). */
  body?: unknown;
  parent?: UnitOfWork;
  /** The actor resolver has no side effects (see `setActor`). */
  actorPure?: boolean;
  /**
   * What a unit with a `parent` becomes when the parent stops taking events before it ends
   * (work the parent left running: an un-awaited call): `{ source }` — that source, actor
   * `system` and a request id of its own (an `@Audited` provider call); `own` — its own
   * actor, source and request (a `runAs`). Either way with the request id of the request it
   * came from as `originRequestId`; what it did before stays attributed as it was (see
   * `cutLoose`). Unset: it stays as it is.
   */
  outlived?: 'own' | { source: string };
}

/**
 * The life of a unit of work, in order:
 * - `open`: created (an HTTP request's middleware, a job, a `runAs` call);
 * - `guarded`: routing knows the handler (the first guard has run);
 * - `handling`: the handler runs;
 * - `settling`: the handler is done (or the response is about to be sent); the unit waits
 *   for the transactions that hold its changes to commit or roll back;
 * - `storing`: its events are built (intents claimed their changes) and being written;
 * - `ended`: written, or handed to the retry of unstored units. Whatever runs in its
 *   context from now on (a timer, an un-awaited promise) is late work, attributed to
 *   `system` with the unit's request id as `originRequestId`.
 */
export type UnitState = 'open' | 'guarded' | 'handling' | 'settling' | 'storing' | 'ended';

/** How long a settling unit waits, at most, for the transactions holding its changes (a job, a nested unit). */
const MAX_WAIT_MS = 60_000;

const ANONYMOUS: AuditActor = Object.freeze({ type: 'anonymous' });

const isPromise = (value: unknown): value is PromiseLike<unknown> => typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
/**
 * How long an HTTP response's end waits, at most, for the transactions holding its unit's
 * changes: they normally commit before the end (or, for a handler that answers inside its
 * transaction, just after it); one that waits for the response to finish must not deadlock.
 */
export const RESPONSE_WAIT_MS = 2_000;

const ORDER: Record<UnitState, number> = { open: 0, guarded: 1, handling: 2, settling: 3, storing: 4, ended: 5 };

/**
 * Everything one request, job or `runAs` call does, as seen by the audit trail: who
 * (resolved lazily), through which interface, with which request data, and the
 * events and entity changes waiting to be stored when it ends.
 *
 * This class is the unit's state machine: other parts ask it to move (`guard`,
 * `beginHandler`, `settle`, …) and read its state; none sets its fields.
 */
export class UnitOfWork {
  /** Identifies the unit in `audit_journal`. */
  readonly id = uuidv7();
  source: string;
  request: AuditRequestInfo;
  /** The framework's request object, handed to the actor resolver. */
  requestObject?: AuditRequest;
  /**
   * What `recordBody` stores for this unit's calls when its transport decides it (GraphQL:
   * the operation and its variables, never the query text); else the request object's `body`.
   */
  body?: unknown;
  readonly parent?: UnitOfWork;
  readonly intents: PendingIntent[] = [];
  readonly changes = new ChangeSet();
  /** The `@Audited` metadata of the handler the request is for, once routing knows it. */
  audited?: AuditedMetadata;
  private _handlerArgs?: unknown[];
  /**
   * `@Audited` GraphQL resolver calls of this HTTP request that guards have seen but
   * that have not reached their resolver yet, by their resolve-info object.
   */
  readonly pendingCalls = new Map<object, PendingCall>();
  private readonly journalIds: string[] = [];
  private readonly uncertain: UncertainCommit[] = [];
  private readonly spilledIds: string[] = [];
  /** The ids of the journal rows, by the data source whose journal holds them. */
  private readonly journalIdsBySource = new Map<DataSource, string[]>();
  private rolledBackLate = false;
  private cut = false;

  private _state: UnitState = 'open';
  private handlerEventAdded = false;
  /** Listeners of `onHandlerEnded`; undefined once the route handler has ended. */
  private handlerEndListeners?: Array<() => void> = [];
  private actorSource?: ActorSource;
  private actorPure = true;
  private lastActor?: AuditActor;
  /** The actor as the handler began (see `beginHandler`), a resolver's answer or its promise. */
  private startActor?: AuditActor | Promise<AuditActor | undefined> | undefined;
  /** Open transactions that hold changes of this unit. */
  private readonly transactions = new Set<QueryRunner>();
  private transactionsDone?: () => void;
  /** Ends the wait for those transactions now (when settling is waiting for them). */
  private stopWaiting?: () => void;
  /** Units started inside this one whose events are stored after it ends (they wait for its transactions). */
  private readonly children = new Set<Promise<void>>();
  private childFailure?: { error: unknown };
  private _handledException?: { error: unknown };
  /** Journal rows of changes made outside any transaction, being written (see `journaling`). */
  private readonly journalWrites = new Set<Promise<void>>();
  private settled?: Promise<void>;
  private late?: UnitOfWork;
  private readonly endListeners: Array<() => void> = [];
  private gaveUp = false;
  private _originRequestId?: string;
  private readonly outlived?: 'own' | { source: string };
  /** The unit has been cut loose from its parent (see `cutLoose`). */
  private loose = false;
  /** Its parent had been cut loose when this unit was opened (this unit is late work from the start). */
  private readonly parentWasLoose: boolean;
  /** What the unit did before it was cut loose, with the attribution it had then. */
  private _early?: UnitOfWork;

  constructor(init: UnitOfWorkInit, originRequestId?: string) {
    this.source = init.source;
    this.request = { ...init.request };
    this.requestObject = init.requestObject;
    this.body = init.body;
    this.parent = init.parent;
    this._originRequestId = originRequestId;
    this.outlived = init.parent ? init.outlived : undefined;
    this.parentWasLoose = init.parent?.loose ?? false;
    if (init.actor) this.setActor(init.actor, init.actorPure);
  }

  /** For late work (and a unit its parent left running): the request id of the request it came from. */
  get originRequestId(): string | undefined {
    return this._originRequestId;
  }

  /**
   * The request id that work left running after this unit names as `originRequestId`: the
   * request the unit came from — its own, or for a unit opened inside another (a `runAs`,
   * an `@Audited` call), its outermost parent's.
   */
  get lateOrigin(): string | undefined {
    return this._originRequestId ?? (this.parent ? this.parent.lateOrigin : this.request.requestId);
  }

  /** What the unit did before it was cut loose from its parent (stored with it, attributed as it was then). */
  get early(): UnitOfWork | undefined {
    return this._early;
  }

  get state(): UnitState {
    return this._state;
  }

  /** True while changes and events still join this unit (until its events are built). */
  get isLive(): boolean {
    if (this.outlived !== undefined && !this.loose) this.followParent();
    return ORDER[this._state] < ORDER.storing;
  }

  /**
   * A unit that may outlive its parent (see `UnitOfWorkInit.outlived`): checked whenever
   * work is handed to it and when it ends. Once its parent has stopped taking events (or has
   * been cut loose itself since this unit was opened), the unit is cut loose.
   */
  followParent(): void {
    const parent = this.parent;
    if (this.outlived === undefined || this.loose || !parent || ORDER[this._state] >= ORDER.storing) return;
    const parentLive = parent.isLive;
    if (parentLive && !(parent.loose && !this.parentWasLoose)) return;
    this.cutLoose(parentLive ? parent : undefined);
  }

  /**
   * The parent stopped taking events while this unit ran: from now on the unit is late work
   * of the request it came from. Its events and changes so far were made for that request:
   * they move to `early`, stored with this unit as they were attributed. Its own event, and
   * what it does from now on (changes committed, `log()` events), take the late attribution:
   * for `{ source }`, that source, actor `system` and the request data of `live` (a parent
   * cut loose itself) or a request id of its own.
   */
  private cutLoose(live: UnitOfWork | undefined): void {
    this.loose = true;
    if (this.intents.length > 0 || !this.changes.isEmpty) {
      const early = new UnitOfWork(
        { source: this.source, request: this.request, requestObject: this.requestObject, body: this.body, actor: this.actorSource, actorPure: this.actorPure },
        this._originRequestId,
      );
      early.intents.push(...this.intents.splice(0));
      early.changes.absorb(this.changes);
      this._early = early;
    }
    this._originRequestId = this.parent!.lateOrigin;
    if (this.outlived === 'own' || this.outlived === undefined) return;
    this.source = this.outlived.source;
    this.request = live ? { ...live.request } : { requestId: uuidv7() };
    this.requestObject = undefined;
    this.body = undefined;
    this.setActor({ type: 'system' });
  }

  /** True while the handler has not finished: a client that goes away leaves the storing to it. */
  get handlerRunning(): boolean {
    return (this._state === 'guarded' || this._state === 'handling') && !this.handlerEventAdded;
  }

  /** True once the handler has started (as opposed to a request turned away before it). */
  get handlerStarted(): boolean {
    return ORDER[this._state] >= ORDER.handling;
  }

  /** True once the handler's own event was added (success, failure or rejection). */
  get handlerSettled(): boolean {
    return this.handlerEventAdded;
  }

  /** How many journal rows hold this unit's committed changes. */
  get journalRows(): number {
    return this.journalIds.length;
  }

  /** The ids of the journal rows that hold this unit's committed changes. */
  get journalRowIds(): readonly string[] {
    return this.journalIds;
  }

  /** How many of those rows hold changes the unit does not keep in memory (read back when stored). */
  get spilledRows(): number {
    return this.spilledIds.length;
  }

  /** The ids of those rows. */
  get spilledRowIds(): readonly string[] {
    return this.spilledIds;
  }

  /**
   * A transaction holding changes of this unit failed while its COMMIT was being sent: it
   * may have committed. Kept until the unit is stored, when the journal says.
   */
  addUncertain(entry: UncertainCommit): void {
    this.uncertain.push(entry);
  }

  /** The journal row ids of the transactions whose commit is uncertain, by data source. */
  get uncertainJournalIds(): Map<DataSource, string[]> {
    const out = new Map<DataSource, string[]>();
    for (const entry of this.uncertain) out.set(entry.dataSource, [...(out.get(entry.dataSource) ?? []), ...entry.ids, ...entry.spilledIds]);
    return out;
  }

  /**
   * Settles the uncertain commits: those whose journal rows exist committed, the others did
   * not — a transaction holding the unit's changes that rolled back after its handler, as
   * `releaseTransaction` marks one that rolled back outright (the database refused the
   * COMMIT, e.g. a deferred constraint, or the connection dropped before it).
   */
  resolveUncertain(existing: ReadonlySet<string>): void {
    for (const entry of this.uncertain.splice(0)) {
      const ids = [...entry.ids, ...entry.spilledIds];
      if (!ids.some((id) => existing.has(id))) {
        // With no journal row to look for, nothing says it rolled back.
        if (ids.length > 0 && (this.handlerEventAdded || ORDER[this._state] >= ORDER.settling)) this.rolledBackLate = true;
        continue;
      }
      for (const change of entry.changes) this.changes.record(change);
      this.journaled(entry.ids, false, entry.dataSource);
      this.journaled(entry.spilledIds, true, entry.dataSource);
    }
  }

  /** The data sources whose journals hold rows of this unit, with those rows' ids. */
  get journalSources(): ReadonlyMap<DataSource, readonly string[]> {
    return this.journalIdsBySource;
  }

  /** Journal rows of `dataSource` holding changes of this unit committed. */
  journaled(ids: readonly string[], spilled: boolean, dataSource: DataSource): void {
    if (ids.length === 0) return;
    this.journalIds.push(...ids);
    if (spilled) this.spilledIds.push(...ids);
    const known = this.journalIdsBySource.get(dataSource);
    if (known) known.push(...ids);
    else this.journalIdsBySource.set(dataSource, [...ids]);
  }

  /** The first guard has run: routing knows the handler. */
  guard(audited: AuditedMetadata | undefined, source: string | undefined): void {
    this.moveTo('guarded');
    if (source) this.source = source;
    if (audited) this.audited = audited;
  }

  /**
   * The handler starts. `args` are its arguments when the caller knows them (a provider
   * method's call); a transport handler's are known once it is called (`handlerCalled`).
   */
  beginHandler(audited: AuditedMetadata | undefined, source: string | undefined, args?: unknown[]): void {
    this.moveTo('handling');
    if (source) this.source = source;
    if (audited) this.audited = audited;
    if (args) this._handlerArgs = args;
    this.noteStartActor();
  }

  /**
   * Resolves the actor as the handler begins, after guards and interceptors: the
   * request's user then. The journal names it (a resolver that may have side effects is not
   * run inside a commit), and the events keep it when the handler signed its user out
   * (see `resolveActor`). Called synchronously, before the handler runs.
   */
  private noteStartActor(): void {
    const source = this.actorSource;
    if (typeof source !== 'function' || this.startActor !== undefined) return;
    try {
      const actor = source();
      if (!isPromise(actor)) {
        this.startActor = actor ?? ANONYMOUS;
        return;
      }
      this.startActor = Promise.resolve(actor).then(
        (value) => (this.startActor = value ?? ANONYMOUS),
        () => undefined,
      );
    } catch {
      // Resolved (and its failure reported) again when the events are built.
    }
  }

  /**
   * The `@Audited` method `audited` is being called with `args` in this unit: when it is the
   * unit's handler and its arguments are not known yet, they are now (after Nest's pipes).
   * True when the call is the handler's own.
   */
  handlerCalled(audited: AuditedMetadata, args: unknown[]): boolean {
    if (this.audited !== audited || this._handlerArgs || this._state !== 'handling' || this.handlerEventAdded) return false;
    this._handlerArgs = args;
    return true;
  }

  /** The handler's arguments; empty when it was never called (a guard or a pipe turned the call away). */
  get handlerArgs(): unknown[] {
    return this._handlerArgs ?? [];
  }

  /** Adds the handler's own event, once; false when it was added already. */
  addHandlerEvent(intent: PendingIntent): boolean {
    if (this.handlerEventAdded) return false;
    this.handlerEventAdded = true;
    this.intents.push({ ...intent, handler: true });
    return true;
  }

  /**
   * The route of an HTTP request is done: its handler and every interceptor around it, the
   * app's included, have completed or failed. What ends its response comes next — Nest's
   * answer, or nothing for an `@Res()` handler that did not end it.
   */
  endHandler(): void {
    const listeners = this.handlerEndListeners;
    this.handlerEndListeners = undefined;
    for (const listener of listeners ?? []) listener();
  }

  /**
   * Nest's exception layer handles `error` for this HTTP request (its route, or a
   * middleware, failed): what its error response, if any, answers for. The last one counts.
   */
  exceptionHandled(error: unknown): void {
    this._handledException = { error };
  }

  /** The exception Nest's exception layer handled for this HTTP request, if one was. */
  get handledException(): { error: unknown } | undefined {
    return this._handledException;
  }

  /** Calls `listener` once the route handler has ended (at once if it has; see `endHandler`). */
  onHandlerEnded(listener: () => void): void {
    if (this.handlerEndListeners) this.handlerEndListeners.push(listener);
    else listener();
  }

  /** The handler's own event, if added. */
  get handlerEvent(): PendingIntent | undefined {
    return this.intents.find((intent) => intent.handler);
  }

  /**
   * The unit's work is over: moves to `settling` and runs `store` once, after the
   * transactions holding its changes have committed or rolled back. Every later call
   * returns the same promise.
   */
  settle(store: () => Promise<void>, maxWaitMs = MAX_WAIT_MS): Promise<void> {
    if (this.settled) return this.settled;
    this.followParent();
    this.moveTo('settling');
    this.settled = (async () => {
      if (!(await this.transactionsFinished(maxWaitMs))) this.gaveUp = true;
      await Promise.allSettled([...this.children]);
      await this.journalWritten(maxWaitMs);
      this.moveTo('storing');
      try {
        await store();
        // A unit started inside this one whose events could not be stored fails it too:
        // its events are this unit's answer's as much as its own.
        if (this.childFailure) throw this.childFailure.error;
      } finally {
        this.moveTo('ended');
        for (const listener of this.endListeners.splice(0)) listener();
      }
    })();
    return this.settled;
  }

  /** Calls `listener` once the unit has ended (at once if it has). */
  onEnded(listener: () => void): void {
    if (this._state === 'ended') listener();
    else this.endListeners.push(listener);
  }

  /** True when a transaction holding the unit's changes rolled back after its handler finished. */
  get rolledBackAfterHandler(): boolean {
    return this.rolledBackLate;
  }

  /**
   * The server destroyed the unit's HTTP response before its end (a stream that failed
   * midway, a handler's `destroy()`): its client never got the whole answer.
   */
  responseCut(): void {
    this.cut = true;
  }

  /** True when the server destroyed the unit's HTTP response before its end. */
  get wasResponseCut(): boolean {
    return this.cut;
  }

  /** True when the unit stopped waiting for a transaction that stayed open too long. */
  get gaveUpWaiting(): boolean {
    return this.gaveUp;
  }

  /** True when `settle` has been asked for. */
  get isSettling(): boolean {
    return this.settled !== undefined;
  }

  /** True when the unit's events will wait for open transactions (a nested unit inside its caller's). */
  get waitsForTransactions(): boolean {
    return this.transactions.size > 0;
  }

  /**
   * A unit started inside this one: this unit's own storing waits for it, and fails when
   * it failed (fail-closed).
   */
  adopt(stored: Promise<void>): void {
    const entry = stored.then(
      () => undefined,
      (error: unknown) => {
        this.childFailure ??= { error };
      },
    );
    this.children.add(entry);
    void entry.then(() => this.children.delete(entry));
  }

  /**
   * The journal row of a change of this unit made outside any transaction is being
   * written: the unit's events are built once it is (a row written after them would stay
   * in the journal, and its change be recovered into an event again).
   */
  journaling(write: Promise<unknown>): void {
    const entry = write.then(
      () => undefined,
      () => undefined,
    );
    this.journalWrites.add(entry);
    void entry.then(() => this.journalWrites.delete(entry));
  }

  /** Waits for the journal rows being written (and those begun meanwhile), `maxWaitMs` at most. */
  private async journalWritten(maxWaitMs: number): Promise<void> {
    const deadline = Date.now() + maxWaitMs;
    while (this.journalWrites.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadline - Date.now())));
      await Promise.race([Promise.allSettled([...this.journalWrites]), waited]);
      clearTimeout(timer);
    }
  }

  /** A transaction now holds changes of this unit. */
  holdTransaction(runner: QueryRunner): void {
    this.transactions.add(runner);
  }

  /** A transaction holding changes of this unit committed or rolled back. */
  releaseTransaction(runner: QueryRunner, rolledBack: boolean): void {
    if (!this.transactions.delete(runner)) return;
    if (rolledBack && (this.handlerEventAdded || ORDER[this._state] >= ORDER.settling)) this.rolledBackLate = true;
    if (this.transactions.size === 0) this.transactionsDone?.();
  }

  /**
   * The unit for work that runs in this unit's context after it ended: source and actor
   * `system`, no request data, the request id of the request the unit came from as
   * `originRequestId` (see `lateOrigin`).
   */
  lateUnit(): UnitOfWork {
    if (!this.late) {
      this.late = new UnitOfWork({ source: 'system', actor: { type: 'system' } }, this.lateOrigin);
      this.late._state = 'ended';
    }
    return this.late;
  }

  /**
   * The `originRequestId` of a unit opened in this unit's context (an `@Audited` method,
   * `runAs`): while this unit is live, its own (set when it is late work itself); once it
   * has stopped taking events, the new unit is late work of its request (and is not its child).
   */
  get originForOpened(): string | undefined {
    return this.isLive ? this.originRequestId : this.lateUnit().originRequestId;
  }

  /**
   * Sets where the actor comes from. `pure`: the resolver has no side effects and may be
   * called at any time (the default one, which only reads `request.user`).
   */
  setActor(actor: ActorSource, pure = false): void {
    this.actorSource = actor;
    this.actorPure = typeof actor !== 'function' || pure;
  }

  /** True when the actor can be known without running code with side effects. */
  get actorIsPure(): boolean {
    return this.actorPure;
  }

  /**
   * The unit's actor, resolved now; when that is anonymous but the handler began with a
   * user (a handler that signs its user out, as Passport's `logout()` clears
   * `request.user`), that user.
   */
  async resolveActor(): Promise<AuditActor> {
    const source = this.actorSource;
    let actor = (typeof source === 'function' ? await source() : source) ?? ANONYMOUS;
    if (actor.type === 'anonymous' && this.startActor !== undefined) {
      const start = await this.startActor;
      if (start && start.type !== 'anonymous') actor = start;
    }
    this.lastActor = actor;
    return actor;
  }

  /**
   * The actor as far as it is known without running a resolver that may have side effects
   * (one that writes must not run inside the commit of another transaction): a fixed actor,
   * a pure resolver's answer, or the last one resolved.
   */
  async knownActorNow(): Promise<AuditActor | undefined> {
    if (this.actorPure) return this.resolveActor();
    // Not awaited: a resolver still running may be waiting for this very commit (one that writes).
    return this.lastActor ?? (isPromise(this.startActor) ? undefined : this.startActor);
  }


  /** True when nothing waits to be stored. */
  get isIdle(): boolean {
    return this.intents.length === 0 && this.changes.isEmpty && this.journalRows === 0 && this.uncertain.length === 0 && !this._early;
  }

  /**
   * Resolves with true when no open transaction holds the unit's changes, or with false
   * after `maxWaitMs` (a transaction left open by mistake, or one that waits for the
   * response to finish, must not hold the unit forever: the changes it holds are then
   * recorded as fallback events of this unit when it commits).
   */
  private transactionsFinished(maxWaitMs: number): Promise<boolean> {
    if (this.transactions.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), maxWaitMs);
      timer.unref();
      this.transactionsDone = () => {
        clearTimeout(timer);
        this.stopWaiting = undefined;
        resolve(true);
      };
      this.stopWaiting = () => {
        clearTimeout(timer);
        this.transactionsDone = undefined;
        resolve(false);
      };
    });
  }

  /**
   * The unit's answer is ready to go (a message's reply): if it is still waiting for
   * transactions holding its changes, it waits `maxWaitMs` more at most, as an HTTP
   * response's end does (a transaction that commits only after the answer would otherwise
   * hold it up to the end of the unit's own, longer wait).
   */
  waitAtMost(maxWaitMs: number): void {
    const stop = this.stopWaiting;
    if (!stop) return;
    setTimeout(() => {
      if (this.stopWaiting === stop) stop();
    }, maxWaitMs).unref();
  }

  /** Moves forward only: a unit never goes back to an earlier state. */
  private moveTo(state: UnitState): void {
    if (ORDER[state] > ORDER[this._state]) this._state = state;
  }
}
