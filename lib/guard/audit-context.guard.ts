import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { HttpRequestLike } from '../context/request-info.js';
import { UnitOfWorkFactory } from '../context/unit-of-work.factory.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import { AuditedIntentFactory } from '../interceptor/audited-intent.factory.js';
import { DeniedCalls } from './denied-calls.js';
import { readGraphqlBody, readGraphqlOperation } from '../transports/graphql-call.js';

/**
 * Runs before every other guard and always lets the request through. It tells the
 * request's unit of work which handler it is for, so that a request another guard
 * rejects is still recorded against its `@Audited` action (denied access attempts
 * are audit events) with the right route and source. Under a GraphQL resolver it
 * marks the HTTP request's unit as a GraphQL request, so that what guards do is
 * attributed to that interface.
 */
@Injectable()
export class AuditContextGuard implements CanActivate {
  constructor(
    private readonly units: UnitOfWorkFactory,
    private readonly intents: AuditedIntentFactory,
    private readonly denied: DeniedCalls,
  ) {}

  canActivate(ctx: ExecutionContext): boolean {
    const type = ctx.getType<string>();
    if (type === 'graphql') return this.noteGraphqlCall(ctx);
    if (type === 'rpc' || type === 'ws') {
      const { audited, source } = this.intents.metadataOf(ctx);
      if (audited) this.denied.note(ctx, audited, source);
      return true;
    }
    if (type !== 'http') return true;
    const request = ctx.switchToHttp().getRequest<HttpRequestLike>();
    const unit = this.units.attachedTo(request);
    if (!unit) return true;
    const { audited, source } = this.intents.metadataOf(ctx);
    unit.requestObject = request as unknown as AuditRequest;
    this.units.routed(unit, request);
    unit.guard(audited, source);
    return true;
  }

  /**
   * Marks the HTTP request's unit as a GraphQL request and notes an `@Audited` resolver
   * call on it until the call reaches its resolver: one still pending when the response
   * ends was turned away by a guard.
   */
  private noteGraphqlCall(ctx: ExecutionContext): boolean {
    const { audited, source } = this.intents.metadataOf(ctx);
    const http = this.units.joinGraphqlRequest(ctx, source);
    const info = ctx.getArgByIndex<{ path?: { key?: unknown } } | undefined>(3);
    if (!http || !audited || !info || typeof info !== 'object') return true;
    http.pendingCalls.set(info, {
      audited,
      source: source ?? 'graphql',
      request: { ...http.request, ...readGraphqlOperation(ctx) },
      body: readGraphqlBody(ctx),
      ...(typeof info.path?.key === 'string' ? { responseKey: info.path.key } : {}),
    });
    return true;
  }
}
