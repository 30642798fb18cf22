import { Inject, Injectable, Logger, type ArgumentsHost, type ExecutionContext, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';
import {
  listenToTransportExceptionFilters,
  stopListeningToTransportExceptionFilters,
  type TransportExceptionListener,
} from '../integrations/nest-transport-exception-filters.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';

/** A noted call: its unit, its action and the transport's arguments. */
interface NotedCall {
  unit: UnitOfWork;
  audited: AuditedMetadata;
  args: unknown[];
}

/** The object of one message only: its RPC context, or its WebSocket payload when that is an object. */
const callKey = (args: unknown[]): object | undefined => {
  const key = args[1];
  return key !== null && typeof key === 'object' ? key : undefined;
};

/** Where calls without such an object are queued: their first argument (the WebSocket client), else one shared queue. */
const SHARED_QUEUE = {};
const queueKey = (args: unknown[]): object => {
  const first = args[0];
  return first !== null && (typeof first === 'object' || typeof first === 'function') ? first : SHARED_QUEUE;
};

/**
 * Whether two arguments arrays are of the same call: the same values, one by one. Only the
 * length both have is compared (NestJS 11 appends a gateway event's pattern once more to
 * the arguments its guards get than to those its exception filter gets).
 */
const sameCall = (noted: unknown[], args: unknown[]): boolean => {
  const length = Math.min(noted.length, args.length);
  for (let i = 0; i < length; i++) if (!Object.is(noted[i], args[i])) return false;
  return true;
};

/**
 * Queued calls of one client kept at most. A call turned away leaves the queue in the base
 * exception filter; one whose error a filter of yours handles without it never does, so
 * the oldest is dropped past this bound.
 */
const MAX_QUEUED = 256;

/**
 * Denied access attempts over microservice and WebSocket transports. The first global
 * guard notes each `@Audited` message call; the interceptor forgets it when the call
 * reaches its handler. A call a guard turns away ends in Nest's base exception filter of
 * its transport (`BaseRpcExceptionFilter`, `BaseWsExceptionFilter`, also when a filter of
 * yours extends it): there the noted call is stored as a `failure` event before the error
 * goes back to the client. Those filters are looked up at start-up, only if their
 * packages are installed.
 *
 * The guard, the interceptor and the filter each get an arguments array of their own,
 * holding the same values. A call is found again by the object that is its alone: its RPC
 * context, or its WebSocket payload when that is an object. A WebSocket payload that is
 * not (`7`, `"7"`, `null`) belongs to no one call, so such calls wait in a queue of their
 * client, each found by all its arguments (the client, the payload, the event or
 * socket.io's acknowledgement callback), the oldest first. Calls equal in every argument
 * record the same things; each noted unit is used once.
 */
@Injectable()
export class DeniedCalls implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly pending = new WeakMap<object, NotedCall>();
  private readonly queued = new WeakMap<object, NotedCall[]>();
  private warnedFull = false;
  private readonly listener: TransportExceptionListener = (host, exception) => this.settle(host, exception);

  constructor(
    private readonly units: UnitOfWorkFactory,
    private readonly intents: AuditedIntentFactory,
    private readonly recorder: AuditRecorder,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  async onModuleInit(): Promise<void> {
    if (!this.options.enabled) return;
    const patched = await listenToTransportExceptionFilters(this.listener);
    for (const transport of patched) this.logger.debug?.(`recording denied ${transport} calls`);
  }

  onApplicationShutdown(): void {
    stopListeningToTransportExceptionFilters(this.listener);
  }

  /** Notes an `@Audited` call as it passes the first guard. */
  note(ctx: ExecutionContext, audited: AuditedMetadata, source: string | undefined): void {
    const { unit } = this.units.forHandler(ctx);
    if (source) unit.source = source;
    // The handler never runs if the call is turned away: its options get the transport's arguments.
    const args = ctx.getArgs();
    const call: NotedCall = { unit, audited, args };
    const key = callKey(args);
    if (key) {
      this.pending.set(key, call);
      return;
    }
    const owner = queueKey(args);
    const queue = this.queued.get(owner);
    if (!queue) this.queued.set(owner, [call]);
    else if (queue.push(call) > MAX_QUEUED) {
      queue.shift();
      if (!this.warnedFull) this.logger.warn(`more than ${MAX_QUEUED} calls of one client noted but neither handled nor turned away: the oldest is forgotten`);
      this.warnedFull = true;
    }
  }

  /** The call reached its handler: the interceptor records it from here on. */
  reached(ctx: ExecutionContext): void {
    const args = ctx.getArgs();
    const key = callKey(args);
    if (key) this.pending.delete(key);
    else this.take(args);
  }

  /** If the failing call is a noted one, stores its failure event; resolves when stored. */
  settle(host: ArgumentsHost, exception: unknown): Promise<void> | undefined {
    const args = host.getArgs();
    const key = callKey(args);
    const call = key ? this.pending.get(key) : this.take(args);
    if (!call) return undefined;
    if (key) this.pending.delete(key);
    this.intents.settleDenied(call.unit, call.audited, call.args, exception);
    return this.recorder.end(call.unit).catch(() => undefined); // logged by the recorder
  }

  /** Removes and returns the oldest queued call with these arguments. */
  private take(args: unknown[]): NotedCall | undefined {
    const queue = this.queued.get(queueKey(args));
    if (!queue?.length) return undefined;
    const index = queue.findIndex((call) => sameCall(call.args, args));
    return index < 0 ? undefined : queue.splice(index, 1)[0];
  }
}
