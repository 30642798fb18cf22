import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { catchError, concat, concatMap, defer, EMPTY, from, mergeMap, Observable, throwError } from 'rxjs';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditOutcome } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { DeniedCalls } from '../guard/denied-calls.js';
import { AuditedIntentFactory } from './audited-intent.factory.js';

/**
 * Registered globally by `AuditModule`. Around every handler: joins (or opens) the
 * unit of work; when the handler completes or throws, adds the `@Audited` event and
 * stores the unit's events before the result goes back to the caller. The handler's
 * error reaches the caller unchanged.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly context: AuditContext,
    private readonly units: UnitOfWorkFactory,
    private readonly recorder: AuditRecorder,
    private readonly intents: AuditedIntentFactory,
    private readonly denied: DeniedCalls,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.options.enabled) return next.handle();
    const { audited, source } = this.intents.metadataOf(ctx);
    // A call that got here was not turned away by a guard.
    const type = ctx.getType<string>();
    if (type === 'graphql') this.units.joinGraphqlRequest(ctx)?.pendingCalls.delete(ctx.getArgByIndex(3));
    else if (type === 'rpc' || type === 'ws') this.denied.reached(ctx);
    const { unit, own } = this.units.forHandler(ctx);
    if (source) unit.source = source;
    if (audited) unit.audited = audited;
    unit.handlerRunning = true;

    let settled = false;
    const settle = async (outcome: AuditOutcome, value?: unknown): Promise<void> => {
      if (settled) return;
      settled = true;
      unit.handlerRunning = false;
      if (audited) this.intents.settle(unit, audited, ctx.getArgs(), outcome, value);
      if (own) unit.ended = true;
      await this.recorder.flush(unit);
    };

    return new Observable<unknown>((subscriber) =>
      this.context.run(unit, () =>
        concat(
          next.handle().pipe(
            concatMap(async (result: unknown) => {
              await settle('success', result);
              return result;
            }),
          ),
          defer(() => from(settle('success')).pipe(mergeMap(() => EMPTY))),
        )
          .pipe(
            catchError((error: unknown) =>
              from(settle('failure', error).catch(() => undefined)).pipe(mergeMap(() => throwError(() => error))),
            ),
          )
          .subscribe(subscriber),
      ),
    );
  }
}
