import { Inject, Injectable, type NestMiddleware } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { HttpRequestLike } from '../context/request-info.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import { RESPONSE_WAIT_MS } from '../context/unit-of-work.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { holdResponse, type NodeResponse } from './held-response.js';

/** How long after its client went away a request that never ended is settled anyway. */
const ABANDONED_MS = 60_000;

/**
 * Opens an HTTP request's unit of work before guards and pipes run, so that what they
 * do is attributed too, and settles it when the response is about to be sent — after
 * every interceptor (an app-level transaction has committed by then), whether Nest, an
 * `@Res()` handler or a stream ends the response: the end waits until the unit's events
 * are stored, so a response with a status means the audit trail has it.
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
    holdResponse(response, {
      beforeEnd: (statusCode, body) => {
        this.intents.settleResponse(unit, statusCode, body);
        return this.recorder.settle(unit, RESPONSE_WAIT_MS);
      },
      failOpen: this.options.failOpen,
      keepHeader: this.options.requestIdHeader,
      onCut: () => unit.responseCut(),
    });
    // A client that goes away mid-request: a request that is still on its way (in a
    // middleware, a guard, its handler, an interceptor) gets an end from Nest all the same,
    // which settles it; one whose route is done but not ended (an `@Res()` handler that
    // does not answer a client gone meanwhile) is settled once its route is done — its
    // handler and every interceptor around it — and one turned away before its handler, now.
    // A request the framework drops without ever ending it (Fastify, before routing) is
    // settled after a while.
    response.once('close', () => {
      if (unit.isSettling) return;
      const settle = () => void (unit.isSettling || this.recorder.settle(unit).catch(() => undefined)); // logged by the recorder
      if (unit.handlerSettled && !unit.handlerStarted) return settle();
      unit.onHandlerEnded(() => setImmediate(settle)); // after Nest's own end of the response, when it has one
      const timer = setTimeout(settle, ABANDONED_MS);
      timer.unref();
      unit.onEnded(() => clearTimeout(timer));
    });
    this.context.run(unit, () => next());
  }
}
