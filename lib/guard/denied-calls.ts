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

/** The object that identifies one message: the RPC context, or the WebSocket payload. */
const callKey = (host: ArgumentsHost): object | undefined => {
  const key = host.getArgByIndex<unknown>(1);
  return key !== null && typeof key === 'object' ? key : undefined;
};

/**
 * Denied access attempts over microservice and WebSocket transports. The first global
 * guard notes each `@Audited` message call (keyed by its RPC context or payload object);
 * the interceptor forgets it when the call reaches its handler. A call a guard turns
 * away ends in Nest's base exception filter of its transport (`BaseRpcExceptionFilter`,
 * `BaseWsExceptionFilter`, also when a filter of yours extends it): there the noted call
 * is stored as a `failure` event before the error goes back to the client. Those
 * filters are looked up at start-up, only if their packages are installed.
 */
@Injectable()
export class DeniedCalls implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Audit');
  private readonly pending = new WeakMap<object, { unit: UnitOfWork; audited: AuditedMetadata; args: unknown[] }>();
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
    const key = callKey(ctx);
    if (!key) return;
    const { unit } = this.units.forHandler(ctx);
    if (source) unit.source = source;
    // The handler never runs if the call is turned away: its options get the transport's arguments.
    this.pending.set(key, { unit, audited, args: ctx.getArgs() });
  }

  /** The call reached its handler: the interceptor records it from here on. */
  reached(ctx: ExecutionContext): void {
    const key = callKey(ctx);
    if (key) this.pending.delete(key);
  }

  /** If the failing call is a noted one, stores its failure event; resolves when stored. */
  settle(host: ArgumentsHost, exception: unknown): Promise<void> | undefined {
    const key = callKey(host);
    const entry = key && this.pending.get(key);
    if (!key || !entry) return undefined;
    this.pending.delete(key);
    this.intents.settleDenied(entry.unit, entry.audited, entry.args, exception);
    return this.recorder.end(entry.unit).catch(() => undefined); // logged by the recorder
  }
}
