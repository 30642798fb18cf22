import type {
  AuditActor,
  AuditChange,
  AuditError,
  AuditOutcome,
  AuditRequestInfo,
  AuditTarget,
} from '../interfaces/audit-event.interface.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import { ChangeSet } from '../capture/change-set.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';

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
  /** Settles once the event is stored (or could not be). */
  settle?: (error?: unknown) => void;
}

/** An `@Audited` call inside a request that may still be turned away by a guard. */
export interface PendingCall {
  audited: AuditedMetadata;
  source: string;
  request: AuditRequestInfo;
  /** Where the call's result or error sits in the response (GraphQL: the field's response key). */
  responseKey?: string;
}

export interface UnitOfWorkInit {
  source: string;
  actor?: ActorSource;
  request?: AuditRequestInfo;
  requestObject?: AuditRequest;
  parent?: UnitOfWork;
}

/**
 * Everything one request, job or `runAs` call does, as seen by the audit trail: who
 * (resolved lazily), through which interface, with which request data, and the
 * events and entity changes waiting to be stored when it ends.
 */
export class UnitOfWork {
  source: string;
  request: AuditRequestInfo;
  /** The framework's request object, handed to the actor resolver. */
  requestObject?: AuditRequest;
  readonly parent?: UnitOfWork;
  readonly intents: PendingIntent[] = [];
  readonly changes = new ChangeSet();
  /** Set once the unit's own work is over: later events are stored at once. */
  ended = false;
  /** The `@Audited` metadata of the handler the request is for, once routing knows it. */
  audited?: AuditedMetadata;
  /** Set once the handler's event is added (success, failure or rejection). */
  handlerSettled = false;
  /** Set while a request is between its first guard and its response: its owner will store it. */
  handlerRunning = false;
  /**
   * `@Audited` GraphQL resolver calls of this HTTP request that guards have seen but
   * that have not reached their resolver yet, by their resolve-info object.
   */
  readonly pendingCalls = new Map<object, PendingCall>();
  private actorSource?: ActorSource;
  private flushing: Promise<void> = Promise.resolve();

  constructor(init: UnitOfWorkInit) {
    this.source = init.source;
    this.request = { ...init.request };
    this.requestObject = init.requestObject;
    this.parent = init.parent;
    this.actorSource = init.actor;
  }

  setActor(actor: ActorSource): void {
    this.actorSource = actor;
  }

  async resolveActor(): Promise<AuditActor> {
    const source = this.actorSource;
    const actor = typeof source === 'function' ? await source() : source;
    return actor ?? { type: 'anonymous' };
  }

  /** True when nothing waits to be stored. */
  get isIdle(): boolean {
    return this.intents.length === 0 && this.changes.isEmpty;
  }

  /** Runs `task` after any flush already under way, so flushes never overlap. */
  serialise(task: () => Promise<void>): Promise<void> {
    const next = this.flushing.then(task, task);
    this.flushing = next.catch(() => undefined);
    return next;
  }
}
