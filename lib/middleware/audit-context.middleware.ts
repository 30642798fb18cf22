import { Inject, Injectable, Optional, type ArgumentsHost, type NestMiddleware, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import type { HttpRequestLike } from '../context/request-info.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import { RESPONSE_WAIT_MS } from '../context/unit-of-work.js';
import { listenToHttpExceptions, stopListeningToHttpExceptions, type HttpExceptionListener } from '../integrations/nest-http-exceptions-handler.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { holdResponse, type NodeResponse } from './held-response.js';

/** How long after its client went away a request that never ended is settled anyway. */
const ABANDONED_MS = 60_000;

/** The methods whose body Fastify reads, when the request declares one. */
const FASTIFY_BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'QUERY']);

/** The parts of Node's `IncomingMessage` that tell whether its body can still be read. */
interface IncomingBody {
  method?: string;
  headers: Record<string, string | string[] | undefined>;
  readonly destroyed?: boolean;
  readonly readableEnded?: boolean;
  /** True once something reads the body (Fastify, after the middleware). */
  readonly readableFlowing?: boolean | null;
  once?(event: 'resume', listener: () => void): unknown;
}

/**
 * True when Fastify has dropped `request`: it reads a request's body after the middleware —
 * of a method that carries one, when a `Content-Type`, a length other than 0 or chunks
 * declare it — and the body of a request whose connection closed before it was read is gone
 * (Node discards it: the read never ends, nor fails). Not before Fastify starts reading it:
 * until then, the request is still in a middleware, whose work is the request's.
 */
function fastifyDropped(request: IncomingBody): boolean {
  if (request.destroyed !== true || request.readableEnded !== false || request.readableFlowing !== true) return false;
  if (!FASTIFY_BODY_METHODS.has((request.method ?? '').toUpperCase())) return false;
  const { headers } = request;
  const length = headers['content-length'];
  return headers['content-type'] !== undefined || headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Opens an HTTP request's unit of work before guards and pipes run, so that what they
 * do is attributed too, and settles it when the response is about to be sent — after
 * every interceptor (an app-level transaction has committed by then), whether Nest, an
 * `@Res()` handler or a stream ends the response: the end waits until the unit's events
 * are stored, so a response with a status means the audit trail has it.
 *
 * Every exception Nest's HTTP exception layer handles is noted on its request's unit, so
 * that a failure the audit interceptor did not see (thrown by an app-level interceptor
 * after the handler succeeded) is recorded with its own class, not only the status it got.
 */
@Injectable()
export class AuditContextMiddleware implements NestMiddleware, OnModuleInit, OnApplicationShutdown {
  private readonly exceptions: HttpExceptionListener = (host, exception) => this.noteException(host, exception);

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly context: AuditContext,
    private readonly units: UnitOfWorkFactory,
    private readonly recorder: AuditRecorder,
    private readonly intents: AuditedIntentFactory,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {}

  async onModuleInit(): Promise<void> {
    if (this.options.enabled) await listenToHttpExceptions(this.exceptions);
  }

  onApplicationShutdown(): void {
    stopListeningToHttpExceptions(this.exceptions);
  }

  /** Notes on an HTTP request's unit the exception Nest is about to hand to the filters. */
  private noteException(host: ArgumentsHost, exception: unknown): void {
    if (host.getType() !== 'http') return;
    const request = host.getArgByIndex<HttpRequestLike | undefined>(0);
    const unit = request && typeof request === 'object' ? this.units.attachedTo(request) : undefined;
    unit?.exceptionHandled(exception);
  }

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
    // A request the framework drops without ever ending it (Fastify, whose client left before
    // it read the body) is settled after a while, or by the shutdown, which does not wait for it.
    response.once('close', () => {
      if (unit.isSettling) return;
      const settle = () => void (unit.isSettling || this.recorder.settle(unit).catch(() => undefined)); // logged by the recorder
      if (unit.handlerSettled && !unit.handlerStarted) return settle();
      unit.onHandlerEnded(() => setImmediate(settle)); // after Nest's own end of the response, when it has one
      const timer = setTimeout(settle, ABANDONED_MS);
      timer.unref();
      unit.onEnded(() => clearTimeout(timer));
      if (this.adapterHost?.httpAdapter?.getType() === 'fastify') {
        const raw = (request.raw ?? request) as IncomingBody;
        this.context.strand(unit, () => unit.state === 'open' && fastifyDropped(raw), settle);
        // Fastify starts reading the body once the middleware is done: the request is dropped then.
        raw.once?.('resume', () => setImmediate(() => this.context.recheckStranded(unit)));
      }
    });
    this.context.run(unit, () => next());
  }
}
