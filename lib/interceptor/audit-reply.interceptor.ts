import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { catchError, concat, concatMap, defer, EMPTY, from, mergeMap, type Observable, tap, throwError } from 'rxjs';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { RESPONSE_WAIT_MS } from '../context/unit-of-work.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { HttpRequestLike } from '../context/request-info.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { callStreamed } from '../transports/rpc-request-stream.js';
import { CallUnits } from './call-units.js';

/**
 * Put in front of every other global interceptor by `AuditModule`. A microservice message
 * or a WebSocket event is its own unit of work, stored by the audit interceptor before
 * the handler's result goes on; but when an interceptor outside it holds the handler's
 * changes in a transaction (an app-level `APP_INTERCEPTOR` that runs each handler in a
 * database transaction), the unit can only be stored once that transaction has ended,
 * after the audit interceptor let the result through. Here, outside every interceptor,
 * the reply (its first value, its completion or its error; of a streaming gRPC call,
 * its completion or its error: see `callStreamed`) waits until the unit is stored; when it
 * could not be (fail-closed), the call fails with `AuditWriteError` instead of
 * replying. A transaction still holding the unit's changes by then (one that
 * commits only after the reply) is waited for 2 s at most, as an HTTP response's end
 * does; what it commits later is recorded as the unit's fallback events.
 *
 * For an HTTP request it only tells the request's unit when the route's whole chain of
 * interceptors, the app's included, has completed or failed (`UnitOfWork.endHandler`):
 * what ends its response comes next.
 */
@Injectable()
export class AuditReplyInterceptor implements NestInterceptor {
  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly calls: CallUnits,
    private readonly recorder: AuditRecorder,
    private readonly units: UnitOfWorkFactory,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const type = ctx.getType<string>();
    if (!this.options.enabled) return next.handle();
    if (type === 'http') return this.routeHandled(ctx, next);
    if (type !== 'rpc' && type !== 'ws') return next.handle();
    let waited: Promise<void> | undefined;
    /** Resolves once the call's unit is stored (at once when it has no unit); rejects when it could not be stored. */
    const stored = (): Promise<void> => {
      if (!waited) {
        const unit = this.calls.of(ctx);
        // From here, a transaction still holding the unit's changes is waited for as an HTTP response's end waits.
        unit?.waitAtMost(RESPONSE_WAIT_MS);
        waited = unit ? this.recorder.settle(unit) : Promise.resolve();
      }
      return waited;
    };
    // A streaming gRPC call (of requests or of replies) is one unit until its result ends.
    const replies =
      type === 'rpc' && callStreamed(ctx)
        ? next.handle()
        : next.handle().pipe(
            concatMap(async (value: unknown) => {
              await stored();
              return value;
            }),
          );
    return concat(
      replies,
      defer(() => from(stored()).pipe(mergeMap(() => EMPTY))),
    ).pipe(
      catchError((error: unknown) =>
        // The handler's own error goes on unchanged (its unit's failure is logged by the recorder).
        from(stored().catch(() => undefined)).pipe(mergeMap(() => throwError(() => error))),
      ),
    );
  }

  /** An HTTP route's chain: its request's unit is told when the chain has completed or failed. */
  private routeHandled(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const unit = this.units.attachedTo(ctx.switchToHttp().getRequest<HttpRequestLike>());
    if (!unit) return next.handle();
    const ended = () => unit.endHandler();
    return next.handle().pipe(tap({ complete: ended, error: ended }));
  }
}
