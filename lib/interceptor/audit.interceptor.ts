import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { catchError, concat, concatMap, defer, EMPTY, from, mergeMap, Observable, tap, throwError } from 'rxjs';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditError, AuditOutcome } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { callStreamed, requestStreamInHandlerContext } from '../transports/rpc-request-stream.js';
import { DeniedCalls } from '../guard/denied-calls.js';
import { AuditedIntentFactory } from './audited-intent.factory.js';
import { CallUnits } from './call-units.js';

/** The error of a call whose caller stopped listening before its result ended. */
const CANCELLED: AuditError = Object.freeze({ name: 'Cancelled' });

/**
 * Registered globally by `AuditModule`. Around every handler: joins (or opens) the unit
 * of work and adds the `@Audited` event when the handler completes or throws.
 *
 * An HTTP request's unit (opened by the middleware) is stored when its response is about
 * to be sent, so that interceptors outside this one (an app-level transaction), `@Res()`
 * handlers and streams are inside it. A unit of its own (a GraphQL resolver, a message,
 * a WebSocket event) is stored here, before the result goes back to the caller. The
 * handler's error reaches the caller unchanged.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly context: AuditContext,
    private readonly units: UnitOfWorkFactory,
    private readonly recorder: AuditRecorder,
    private readonly intents: AuditedIntentFactory,
    private readonly denied: DeniedCalls,
    private readonly calls: CallUnits,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.options.enabled) return next.handle();
    const { audited, source } = this.intents.metadataOf(ctx);
    // A call that got here was not turned away by a guard.
    const type = ctx.getType<string>();
    if (type === 'graphql') this.units.joinGraphqlRequest(ctx)?.pendingCalls.delete(ctx.getArgByIndex(3));
    else if (type === 'rpc' || type === 'ws') this.denied.reached(ctx);
    if (type === 'rpc') requestStreamInHandlerContext(ctx);
    const { unit, own } = this.units.forHandler(ctx);
    unit.beginHandler(audited, source);
    // The options' `args` are the handler's own (after pipes), given to the unit when it is called.
    const addEvent = (outcome: AuditOutcome, value?: unknown, error?: AuditError): void => {
      if (audited) this.intents.settle(unit, audited, unit.handlerArgs, outcome, value, error);
    };
    if (!own) return this.storedAtResponse(unit, next, addEvent);
    // A message's or WebSocket event's reply waits for its unit in AuditReplyInterceptor.
    if (type === 'rpc' || type === 'ws') this.calls.set(ctx, unit);
    return this.storedHere(unit, next, addEvent, type === 'rpc' && callStreamed(ctx));
  }

  /** An HTTP request's unit: the event is added here, the unit stored when the response ends. */
  private storedAtResponse(unit: UnitOfWork, next: CallHandler, addEvent: (outcome: AuditOutcome, value?: unknown) => void): Observable<unknown> {
    let last: unknown;
    return new Observable<unknown>((subscriber) =>
      this.context.run(unit, () =>
        next
          .handle()
          .pipe(
            tap({
              next: (value: unknown) => (last = value),
              complete: () => addEvent('success', last),
              error: (error: unknown) => addEvent('failure', error),
            }),
          )
          .subscribe(subscriber),
      ),
    );
  }

  /**
   * A unit of its own: stored before the first result (or the error) goes back to the
   * caller. A streaming gRPC call (client, server or bidirectional streaming: see
   * `callStreamed`) is one unit until its result ends: a reply goes on as it comes (a
   * handler answers and goes on writing), and the unit is stored before the result ends
   * (or fails).
   */
  private storedHere(
    unit: UnitOfWork,
    next: CallHandler,
    addEvent: (outcome: AuditOutcome, value?: unknown, error?: AuditError) => void,
    streamed: boolean,
  ): Observable<unknown> {
    let settled = false;
    let last: unknown;
    const settle = async (outcome: AuditOutcome, value?: unknown, error?: AuditError): Promise<void> => {
      if (settled) return;
      settled = true;
      addEvent(outcome, value, error);
      await this.recorder.end(unit);
    };
    // Called in the unit's context, as next.handle() calls the handler.
    const results = (): Observable<unknown> =>
      streamed
        ? next.handle().pipe(tap((result: unknown) => (last = result)))
        : next.handle().pipe(
            concatMap(async (result: unknown) => {
              await settle('success', result);
              return result;
            }),
          );
    return new Observable<unknown>((subscriber) => {
      const subscription = this.context.run(unit, () =>
        concat(
          results(),
          defer(() => from(settle('success', last)).pipe(mergeMap(() => EMPTY))),
        )
          .pipe(
            catchError((error: unknown) =>
              from(settle('failure', error).catch(() => undefined)).pipe(mergeMap(() => throwError(() => error))),
            ),
          )
          .subscribe(subscriber),
      );
      return () => {
        subscription.unsubscribe();
        // The caller stopped listening before the result ended (a gRPC client that cancelled
        // a stream, a deadline): what the handler did so far is stored all the same.
        if (!settled) void settle('failure', undefined, CANCELLED).catch(() => undefined); // logged by the recorder
      };
    });
  }
}
