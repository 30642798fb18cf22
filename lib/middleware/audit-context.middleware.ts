import { Inject, Injectable, type NestMiddleware } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { HttpRequestLike } from '../context/request-info.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import { AuditRecorder } from '../service/audit-recorder.js';

interface NodeResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end: (...args: unknown[]) => unknown;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Opens an HTTP request's unit of work before guards and pipes run, so that what they
 * do is attributed too, and holds back the end of the response until the unit's
 * events are stored (a response with a status means the audit trail has it).
 */
@Injectable()
export class AuditContextMiddleware implements NestMiddleware {
  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly context: AuditContext,
    private readonly units: UnitOfWorkFactory,
    private readonly recorder: AuditRecorder,
    private readonly intents: AuditedIntentFactory,
  ) {}

  use(request: HttpRequestLike, response: NodeResponse, next: (error?: unknown) => void): void {
    if (!this.options.enabled || this.units.attachedTo(request)) return next();
    const unit = this.units.forHttp(request, response);
    const recorder = this.recorder;
    const intents = this.intents;
    const end = response.end;
    response.end = function (this: NodeResponse, ...args: unknown[]) {
      // An @Audited request that never reached its handler was turned away: record it.
      intents.settleRejected(unit, this.statusCode, args[0]);
      unit.handlerRunning = false;
      if (unit.isIdle) {
        unit.ended = true;
        return end.apply(this, args);
      }
      recorder
        .flush(unit)
        .catch(() => undefined) // logged by the recorder; the response is already decided
        .finally(() => {
          unit.ended = true;
          end.apply(this, args);
        });
      return this;
    };
    // A client that goes away mid-request: while its handler still runs, the handler's
    // own end stores the unit (Nest still answers); otherwise store what is pending now.
    response.once('close', () => {
      if (unit.handlerRunning) return;
      unit.ended = true;
      if (!unit.isIdle) recorder.flush(unit).catch(() => undefined);
    });
    this.context.run(unit, () => next());
  }
}
