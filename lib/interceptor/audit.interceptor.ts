import {
  Inject,
  Injectable,
  Logger,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { concat, defer, EMPTY, from, mergeMap, Observable, catchError, concatMap, throwError } from 'rxjs';
import type { DataSource } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS, AUDIT_SOURCE_METADATA, AUDITED_METADATA } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditedCallContext, AuditedMetadata } from '../decorators/audited.decorator.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { resolveTarget } from '../events/audit-target.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { AuditOutcome } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';

/**
 * Registered globally by `AuditModule`. Around every handler: joins (or opens) the
 * unit of work; when the handler completes or throws, adds the `@Audited` event and
 * stores the unit's events before the result goes back to the caller.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  private readonly logger = new Logger('Audit');

  constructor(
    private readonly reflector: Reflector,
    private readonly context: AuditContext,
    private readonly units: UnitOfWorkFactory,
    private readonly recorder: AuditRecorder,
    private readonly builder: AuditEventBuilder,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
  ) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.options.enabled) return next.handle();
    const targets = [ctx.getHandler(), ctx.getClass()];
    const audited = this.reflector.getAllAndOverride<AuditedMetadata | undefined>(AUDITED_METADATA, targets);
    const label = this.reflector.getAllAndOverride<string | undefined>(AUDIT_SOURCE_METADATA, targets);
    const { unit, own } = this.units.forHandler(ctx);
    if (label) unit.source = label;

    let settled = false;
    const settle = async (outcome: AuditOutcome, value?: unknown): Promise<void> => {
      if (settled) return;
      settled = true;
      if (audited) this.addIntent(unit, audited, ctx, outcome, value);
      if (own) unit.ended = true;
      await this.recorder.flush(unit);
    };

    const handled = new Observable<unknown>((subscriber) =>
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
    return handled;
  }

  /** Adds the handler's intent event; it claims every change of the unit. */
  private addIntent(
    unit: UnitOfWork,
    audited: AuditedMetadata,
    ctx: ExecutionContext,
    outcome: AuditOutcome,
    value: unknown,
  ): void {
    const call: AuditedCallContext = {
      args: ctx.getArgs(),
      request: unit.requestObject,
      params: paramsOf(unit.requestObject),
      ...(outcome === 'success' ? { result: value } : { error: value }),
    };
    unit.intents.push({
      id: uuidv7(),
      occurredAt: new Date(),
      action: audited.action,
      outcome,
      target: this.option(audited, 'target', call, (raw) => (raw ? resolveTarget(this.dataSource, raw) : undefined)),
      reason: this.option(audited, 'reason', call, (raw) => (typeof raw === 'string' ? raw : undefined)),
      context: this.option(audited, 'context', call, (raw) => (raw && typeof raw === 'object' ? raw : undefined)),
      ...(outcome === 'failure' ? { error: this.builder.errorSummary(value) } : {}),
      claim: 'all',
    });
  }

  /** Evaluates one `@Audited` option; a throwing option is logged, never breaks the call. */
  private option<K extends 'target' | 'reason' | 'context', R>(
    audited: AuditedMetadata,
    key: K,
    call: AuditedCallContext,
    convert: (raw: never) => R | undefined,
  ): R | undefined {
    const option = audited[key];
    if (option === undefined) return undefined;
    try {
      const raw = typeof option === 'function' ? (option as (c: AuditedCallContext) => unknown)(call) : option;
      return convert(raw as never);
    } catch (error) {
      this.logger.warn(`@Audited("${audited.action}") option "${key}" failed: ${(error as Error).message}`);
      return undefined;
    }
  }
}

function paramsOf(request: unknown): Record<string, string> {
  const params = (request as { params?: unknown } | undefined)?.params;
  return params && typeof params === 'object' ? (params as Record<string, string>) : {};
}
