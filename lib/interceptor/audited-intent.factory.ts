import { Inject, Injectable, Logger, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { DataSource } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS, AUDIT_SOURCE_METADATA, AUDITED_METADATA } from '../audit.constants.js';
import type { PendingIntent, UnitOfWork } from '../context/unit-of-work.js';
import type { AuditedCallContext, AuditedMetadata } from '../decorators/audited.decorator.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { bound } from '../events/json-safe.js';
import { resolveTarget } from '../events/audit-target.js';
import { AuditDataSources } from '../capture/audit-data-sources.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { AuditError, AuditOutcome } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';

/** What `@Audited` / `@AuditSource` say about a handler. */
export interface HandlerAuditMetadata {
  audited?: AuditedMetadata;
  source?: string;
}

const STATUS_NAMES: Record<number, string> = {
  400: 'BadRequestException',
  401: 'UnauthorizedException',
  403: 'ForbiddenException',
  404: 'NotFoundException',
  429: 'ThrottlerException',
  500: 'InternalServerErrorException',
  502: 'BadGatewayException',
  503: 'ServiceUnavailableException',
};

/** Builds the intent event of an `@Audited` handler call. */
@Injectable()
export class AuditedIntentFactory {
  private readonly logger = new Logger('Audit');

  constructor(
    private readonly reflector: Reflector,
    private readonly builder: AuditEventBuilder,
    @Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource,
    private readonly dataSources: AuditDataSources,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  /** Read once per handler and class: the guard and the interceptor ask on every call. */
  private readonly metadata = new WeakMap<object, WeakMap<object, HandlerAuditMetadata>>();

  metadataOf(ctx: ExecutionContext): HandlerAuditMetadata {
    const handler = ctx.getHandler();
    const type = ctx.getClass();
    let byClass = this.metadata.get(handler);
    if (!byClass) this.metadata.set(handler, (byClass = new WeakMap()));
    let found = byClass.get(type);
    if (!found) {
      const targets = [handler, type];
      found = {
        audited: this.reflector.getAllAndOverride<AuditedMetadata | undefined>(AUDITED_METADATA, targets),
        source: this.reflector.getAllAndOverride<string | undefined>(AUDIT_SOURCE_METADATA, targets),
      };
      byClass.set(type, found);
    }
    return found;
  }

  /** Adds the handler's event to its unit (once); it claims every change of the unit. */
  settle(unit: UnitOfWork, audited: AuditedMetadata, args: unknown[], outcome: AuditOutcome, value: unknown, error?: AuditError): void {
    if (unit.handlerSettled) return;
    unit.addHandlerEvent(this.intent(unit, audited, args, outcome, value, error));
  }

  /**
   * Adds the failure event of a call a guard turned away, with the guard's error: its
   * name, status, and message (a guard's message is meant for the client, unlike a
   * handler's internal errors), bounded and made storable.
   */
  settleDenied(unit: UnitOfWork, audited: AuditedMetadata, args: unknown[], exception: unknown): void {
    const summary = this.builder.errorSummary(exception);
    const message = exception instanceof Error && exception.message ? bound(exception.message, 512) : undefined;
    this.settle(unit, audited, args, 'failure', exception, summary.message === undefined && message ? { ...summary, message } : summary);
  }

  /**
   * When an HTTP response is about to be sent, settles its unit's `@Audited` event from
   * what the response says:
   * - a request that never reached its handler was turned away (a guard said no): a
   *   failure with the response status and the message of the error response (what the
   *   guard's exception says, Nest's `Forbidden resource` for a guard that returned
   *   `false`); so is each `@Audited` GraphQL resolver call a
   *   guard turned away, with the error the response carries for it;
   * - a handler that sent the response itself (`@Res()`) before returning: success for a
   *   2xx/3xx status, else a failure with that status;
   * - a handler that succeeded but whose response is an error (an interceptor or a
   *   transaction commit after it failed): a failure with the error Nest's exception layer
   *   handled for the request (its class, as for an error the handler throws), else with
   *   that status;
   * - an error without a status (not an `HttpException`) that an exception filter
   *   answered with an error status other than the 500 Nest gives it: that status added
   *   to the error.
   */
  settleResponse(unit: UnitOfWork, statusCode: number, body?: unknown): void {
    if (unit.pendingCalls.size > 0) {
      const errors = graphqlErrors(body);
      for (const call of unit.pendingCalls.values()) {
        const error = graphqlError(errors, call.responseKey);
        unit.intents.push({ ...this.intent(unit, call.audited, [], 'failure', undefined, error, call.body), source: call.source, request: call.request });
      }
      unit.pendingCalls.clear();
    }
    if (!unit.audited) return;
    const failed = statusCode >= 400;
    const message = failed ? responseMessage(body) : undefined;
    const statusError: AuditError = {
      name: STATUS_NAMES[statusCode] ?? 'HttpException',
      status: statusCode,
      ...(message !== undefined ? { message } : {}),
    };
    if (!unit.handlerSettled) {
      const outcome = failed || !unit.handlerStarted ? 'failure' : 'success';
      this.settle(unit, unit.audited, unit.handlerArgs, outcome, undefined, outcome === 'failure' ? statusError : undefined);
      return;
    }
    const event = unit.handlerEvent;
    if (event && failed && event.outcome === 'success') {
      event.outcome = 'failure';
      event.error = unit.handledException ? this.withStatus(this.builder.errorSummary(unit.handledException.error), statusCode) : statusError;
    } else if (event?.error && failed) {
      event.error = this.withStatus(event.error, statusCode);
    }
  }

  /**
   * An error without a status of its own that an exception filter answered with another
   * status than Nest's 500 for it (a 404 for TypeORM's EntityNotFoundError): that status.
   */
  private withStatus(error: AuditError, statusCode: number): AuditError {
    return statusCode !== 500 && error.status === undefined ? { ...error, status: statusCode } : error;
  }

  private intent(
    unit: UnitOfWork,
    audited: AuditedMetadata,
    args: unknown[],
    outcome: AuditOutcome,
    value: unknown,
    error?: AuditError,
    body?: unknown,
  ): PendingIntent {
    const call: AuditedCallContext = {
      args,
      request: unit.requestObject,
      params: paramsOf(unit.requestObject),
      ...(outcome === 'success' ? { result: value } : { error: value }),
    };
    const at = Date.now();
    return {
      id: uuidv7(at),
      occurredAt: new Date(at),
      action: audited.action,
      outcome,
      target: this.option(audited, 'target', call, (raw) => (raw ? resolveTarget(this.dataSources.all, raw) : undefined)),
      reason: this.option(audited, 'reason', call, (raw) => (typeof raw === 'string' ? raw : undefined)),
      context: this.withBody(
        unit,
        this.option(audited, 'context', call, (raw) => (raw && typeof raw === 'object' ? raw : undefined)),
        body,
      ),
      ...(outcome === 'failure' ? { error: error ?? this.builder.errorSummary(value) } : {}),
      claim: 'all',
    };
  }

  /**
   * With `recordBody`, the request body joins the context (redacted and bounded when
   * stored): what the transport decided (a GraphQL call's operation and variables), else
   * the HTTP request's body.
   */
  private withBody(unit: UnitOfWork, context: Record<string, unknown> | undefined, given?: unknown): Record<string, unknown> | undefined {
    const body = given ?? unit.body ?? (unit.requestObject as { body?: unknown } | undefined)?.body;
    if (!this.options.recordBody || body === undefined || body === null || unit.source === 'job') return context;
    return { ...context, body };
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

interface GraphqlErrorLike {
  message?: unknown;
  path?: unknown;
  extensions?: { status?: unknown; code?: unknown; originalError?: { statusCode?: unknown } | null } | null;
}

const GRAPHQL_CODES: Record<string, number> = { UNAUTHENTICATED: 401, FORBIDDEN: 403, BAD_REQUEST: 400 };

/** The text of a response body, if it is a small one. */
function bodyText(body: unknown, max: number): string | undefined {
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
  return text !== undefined && text.length <= max ? text : undefined;
}

/**
 * The `message` of a JSON error response (Nest's `{ statusCode, message, error }`, a
 * validation pipe's list of messages joined), bounded and made storable.
 */
function responseMessage(body: unknown): string | undefined {
  const text = bodyText(body, 65_536);
  if (!text || !text.trimStart().startsWith('{')) return undefined;
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string') return bound(message, 512);
    if (Array.isArray(message) && message.every((item) => typeof item === 'string')) return bound(message.join('; '), 512);
  } catch {
    // not JSON: no message
  }
  return undefined;
}

/** The `errors` of a GraphQL JSON response body, if that is what the body is. */
function graphqlErrors(body: unknown): GraphqlErrorLike[] {
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
  if (!text || text.length > 1_000_000 || !text.includes('"errors"')) return [];
  try {
    const parsed = JSON.parse(text) as { errors?: unknown };
    return Array.isArray(parsed.errors) ? (parsed.errors as GraphqlErrorLike[]) : [];
  } catch {
    return [];
  }
}

/** The summary of the error a GraphQL response reports for one field. */
function graphqlError(errors: GraphqlErrorLike[], responseKey: string | undefined): AuditError {
  const error =
    errors.find((candidate) => Array.isArray(candidate.path) && candidate.path[0] === responseKey) ??
    (errors.length === 1 ? errors[0] : undefined);
  const extensions = error?.extensions ?? undefined;
  const raw =
    extensions?.originalError?.statusCode ??
    extensions?.status ??
    (typeof extensions?.code === 'string' ? GRAPHQL_CODES[extensions.code] : undefined);
  const status = typeof raw === 'number' ? raw : undefined;
  return {
    name: (status && STATUS_NAMES[status]) || 'GraphQLError',
    ...(status ? { status } : {}),
    ...(typeof error?.message === 'string' ? { message: error.message.slice(0, 512) } : {}),
  };
}

function paramsOf(request: unknown): Record<string, string> {
  const params = (request as { params?: unknown } | undefined)?.params;
  return params && typeof params === 'object' ? (params as Record<string, string>) : {};
}
