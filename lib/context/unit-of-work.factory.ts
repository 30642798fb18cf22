import { Inject, Injectable, type ExecutionContext } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS, AUDIT_UNIT_OF_WORK } from '../audit.constants.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditContext } from './audit-context.js';
import { readHttpRequest, resolveRequestId, routePattern, type HttpRequestLike } from './request-info.js';
import { UnitOfWork } from './unit-of-work.js';

type Carrier = Record<PropertyKey, unknown>;

/** A response we can set a header on: Express's, Fastify's reply, or Node's. */
interface HeaderSink {
  setHeader?: (name: string, value: string) => unknown;
  header?: (name: string, value: string) => unknown;
  raw?: HeaderSink;
}

/** Creates units of work for requests, and finds the one a request already has. */
@Injectable()
export class UnitOfWorkFactory {
  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly context: AuditContext,
  ) {}

  /** A new unit for an HTTP request: request data read, request id echoed in the response. */
  forHttp(request: HttpRequestLike, response: HeaderSink | undefined): UnitOfWork {
    const raw = request.raw ?? request;
    const requestId = resolveRequestId(raw.headers[this.options.requestIdHeader]);
    const sink = response?.raw ?? response;
    sink?.setHeader?.(this.options.requestIdHeader, requestId);
    const unit = new UnitOfWork({
      source: 'http',
      request: readHttpRequest(request, this.options, requestId),
      requestObject: request as unknown as AuditRequest,
    });
    unit.setActor(() => this.options.actor(unit.requestObject ?? (request as unknown as AuditRequest)));
    (raw as unknown as Carrier)[AUDIT_UNIT_OF_WORK] = unit;
    return unit;
  }

  /** The unit attached to an HTTP request by the middleware, if any. */
  attachedTo(request: HttpRequestLike): UnitOfWork | undefined {
    const carrier = (request.raw ?? request) as unknown as Carrier;
    return carrier[AUDIT_UNIT_OF_WORK] as UnitOfWork | undefined;
  }

  /**
   * The unit for a handler call: the request's own (enriched with the route and the
   * framework's request object), else a new one. `own` says whether the caller
   * created it and so must end it.
   */
  forHandler(ctx: ExecutionContext): { unit: UnitOfWork; own: boolean } {
    const type = ctx.getType<string>();
    if (type === 'http') {
      const http = ctx.switchToHttp();
      const request = http.getRequest<HttpRequestLike>();
      const attached = this.attachedTo(request);
      const unit = attached ?? this.forHttp(request, http.getResponse<HeaderSink>());
      unit.requestObject = request as unknown as AuditRequest;
      unit.request.route = routePattern(request) ?? unit.request.route;
      return { unit, own: !attached };
    }
    const request = requestOf(ctx);
    const unit = new UnitOfWork({
      source: type,
      request: { requestId: resolveRequestId(undefined) },
      requestObject: request,
      parent: this.context.current(),
    });
    unit.setActor(() => (request ? this.options.actor(request) : undefined));
    return { unit, own: true };
  }
}

/** The request of a non-HTTP context: GraphQL's `context.req`, a WebSocket client, an RPC context. */
function requestOf(ctx: ExecutionContext): AuditRequest | undefined {
  switch (ctx.getType<string>()) {
    case 'graphql': {
      const gqlContext = ctx.getArgByIndex<{ req?: AuditRequest; request?: AuditRequest } | undefined>(2);
      return gqlContext?.req ?? gqlContext?.request;
    }
    case 'ws':
      return ctx.switchToWs().getClient<AuditRequest>();
    case 'rpc':
      return ctx.switchToRpc().getContext<AuditRequest>();
    default:
      return undefined;
  }
}
