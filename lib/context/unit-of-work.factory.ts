import { Inject, Injectable, type ContextType, type ExecutionContext } from '@nestjs/common';
import { AUDIT_RESOLVED_OPTIONS, AUDIT_UNIT_OF_WORK } from '../audit.constants.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import { defaultActorResolver, type ResolvedAuditOptions } from '../options/audit-options.js';
import { graphqlRequestOf, readGraphqlBody, readGraphqlOperation } from '../transports/graphql-call.js';
import { readRpcCall } from '../transports/rpc-call.js';
import type { TransportCall } from '../transports/transport-call.js';
import { readWsCall } from '../transports/ws-call.js';
import { WsHandshakes } from '../transports/ws-handshakes.js';
import { AuditContext } from './audit-context.js';
import { readHttpRequest, resolveRequestId, withRoute, type HttpRequestLike } from './request-info.js';
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
    private readonly handshakes: WsHandshakes,
  ) {}

  /** The default actor resolver only reads `request.user`: it may run at any time. */
  private get pureActor(): boolean {
    return this.options.actor === defaultActorResolver;
  }

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
    unit.setActor(() => this.options.actor(unit.requestObject ?? (request as unknown as AuditRequest)), this.pureActor);
    (raw as unknown as Carrier)[AUDIT_UNIT_OF_WORK] = unit;
    return unit;
  }

  /**
   * Routing is done: the unit's request data gets the route pattern, and its path is read
   * again with the segments of secret route parameters masked.
   */
  routed(unit: UnitOfWork, request: HttpRequestLike): void {
    unit.request = withRoute(unit.request, request, this.options);
  }

  /** The unit attached to an HTTP request by the middleware, if any. */
  attachedTo(request: HttpRequestLike): UnitOfWork | undefined {
    const carrier = (request.raw ?? request) as unknown as Carrier;
    return carrier[AUDIT_UNIT_OF_WORK] as UnitOfWork | undefined;
  }

  /**
   * The unit for a handler call. HTTP: the request's own (enriched with the route and
   * the framework's request object), else a new one. GraphQL, RPC, WebSocket: a new
   * unit per call, with the transport's request data. `own` says whether the caller
   * created it and so must end it.
   */
  forHandler(ctx: ExecutionContext): { unit: UnitOfWork; own: boolean } {
    const type = ctx.getType<ContextType | 'graphql'>();
    switch (type) {
      case 'http': {
        const http = ctx.switchToHttp();
        const request = http.getRequest<HttpRequestLike>();
        const attached = this.attachedTo(request);
        const unit = attached ?? this.forHttp(request, http.getResponse<HeaderSink>());
        unit.requestObject = request as unknown as AuditRequest;
        this.routed(unit, request);
        return { unit, own: !attached };
      }
      case 'graphql':
        return { unit: this.forGraphql(ctx), own: true };
      case 'rpc':
        return { unit: this.forCall('rpc', readRpcCall(ctx, this.options)), own: true };
      case 'ws':
        return { unit: this.forCall('ws', readWsCall(ctx, this.options, this.handshakes)), own: true };
      default:
        return { unit: this.forCall(type, { request: { requestId: uuidv7() }, requestObject: undefined }), own: true };
    }
  }

  /**
   * Marks the unit of the HTTP request under a GraphQL resolver call as a GraphQL
   * request (source `graphql`, or the resolver's `@AuditSource`; method the operation
   * type, path the operation name), so that what guards or unaudited code do outside
   * the resolvers is attributed to the GraphQL interface. Returns that unit, if any.
   */
  joinGraphqlRequest(ctx: ExecutionContext, source?: string): UnitOfWork | undefined {
    const request = graphqlRequestOf(ctx);
    const unit = request && this.attachedTo(request);
    if (!unit) return undefined;
    if (source) unit.source = source;
    else if (unit.source === 'http') unit.source = 'graphql';
    const { method, path } = readGraphqlOperation(ctx);
    if (method) unit.request.method = method;
    if (path) unit.request.path = path;
    unit.requestObject = request as unknown as AuditRequest;
    return unit;
  }

  /**
   * A resolver call opens a unit of its own, a child of the HTTP request's unit rather
   * than joining it: one GraphQL request may run several resolvers (several mutations
   * in one document, root query fields resolved in parallel), and each `@Audited`
   * resolver must give exactly one event that claims only the changes it made. A
   * request's unit holds one handler event and one pool of changes, so it cannot do
   * that. The child takes the HTTP request's IP, user agent and request id (read and
   * echoed by the middleware), the operation as method / route / path, and resolves
   * the actor from the GraphQL context's request when the event is built.
   */
  private forGraphql(ctx: ExecutionContext): UnitOfWork {
    const request = graphqlRequestOf(ctx);
    const http = this.joinGraphqlRequest(ctx);
    const base =
      http?.request ??
      (request
        ? readHttpRequest(request, this.options, resolveRequestId((request.raw ?? request).headers[this.options.requestIdHeader]))
        : { requestId: uuidv7() });
    return this.forCall(
      'graphql',
      {
        request: { ip: base.ip, userAgent: base.userAgent, requestId: base.requestId, ...readGraphqlOperation(ctx) },
        requestObject: request as unknown as AuditRequest | undefined,
        body: readGraphqlBody(ctx),
      },
      http,
    );
  }

  /** A unit for one call over a transport; the actor resolver gets the call's request object. */
  private forCall(source: string, call: TransportCall, parent: UnitOfWork | undefined = this.context.current()): UnitOfWork {
    // A unit that has stopped taking events cannot wait for this one: it is no parent.
    const unit = new UnitOfWork({ source, request: call.request, requestObject: call.requestObject, body: call.body, parent: parent?.isLive ? parent : undefined });
    unit.setActor(() => (unit.requestObject ? this.options.actor(unit.requestObject) : undefined), this.pureActor);
    return unit;
  }
}
