import { Inject, Injectable, Logger, type ArgumentsHost, type ExecutionContext, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { from, mergeMap, type Observable } from 'rxjs';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';

type Catch = ((this: unknown, exception: unknown, host: ArgumentsHost) => unknown) & { [PATCHED]?: true };

const PATCHED = Symbol.for('nestjs-system-audit:denied-calls');
/** The instances of every application in this process that note calls. */
const recorders = new Set<DeniedCalls>();

/** The object that identifies one message: the RPC context, or the WebSocket payload. */
const callKey = (host: ArgumentsHost): object | undefined => {
  const key = host.getArgByIndex<unknown>(1);
  return key !== null && typeof key === 'object' ? key : undefined;
};

/** Asks each application whether the failing call is one of its noted calls; stores its event. */
function settleDenied(host: ArgumentsHost, exception: unknown): Promise<void> | undefined {
  for (const recorder of recorders) {
    const stored = recorder.settle(host, exception);
    if (stored) return stored;
  }
  return undefined;
}

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

  constructor(
    private readonly units: UnitOfWorkFactory,
    private readonly intents: AuditedIntentFactory,
    private readonly recorder: AuditRecorder,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  async onModuleInit(): Promise<void> {
    if (!this.options.enabled) return;
    recorders.add(this);
    await Promise.all([
      this.patch(async () => (await import('@nestjs/microservices')).BaseRpcExceptionFilter, 'rpc'),
      this.patch(async () => (await import('@nestjs/websockets')).BaseWsExceptionFilter, 'ws'),
    ]);
  }

  onApplicationShutdown(): void {
    recorders.delete(this);
  }

  /** Notes an `@Audited` call as it passes the first guard. */
  note(ctx: ExecutionContext, audited: AuditedMetadata, source: string | undefined): void {
    const key = callKey(ctx);
    if (!key) return;
    const { unit } = this.units.forHandler(ctx);
    if (source) unit.source = source;
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
    this.intents.settle(entry.unit, entry.audited, entry.args, 'failure', exception);
    entry.unit.ended = true;
    return this.recorder.flush(entry.unit).catch(() => undefined); // logged by the recorder
  }

  private async patch(load: () => Promise<{ prototype: { catch: Catch } }>, transport: 'rpc' | 'ws'): Promise<void> {
    let filter: { prototype: { catch: Catch } };
    try {
      filter = await load();
    } catch {
      return; // that transport's package is not installed
    }
    const original = filter.prototype.catch;
    if (original[PATCHED]) return;
    const patched: Catch =
      transport === 'rpc'
        ? function (this: unknown, exception, host) {
            const stored = settleDenied(host, exception);
            if (!stored) return original.call(this, exception, host);
            return from(stored).pipe(mergeMap(() => original.call(this, exception, host) as Observable<unknown>));
          }
        : function (this: unknown, exception, host) {
            const stored = settleDenied(host, exception);
            if (!stored) return original.call(this, exception, host);
            void stored.then(() => original.call(this, exception, host));
            return undefined;
          };
    patched[PATCHED] = true;
    filter.prototype.catch = patched;
    this.logger.debug?.(`recording denied ${transport} calls`);
  }
}
