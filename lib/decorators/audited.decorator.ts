import { SetMetadata } from '@nestjs/common';
import { AUDITED_METADATA } from '../audit.constants.js';
import { assertAuditAction } from '../events/audit-action.js';
import { auditClassMethods, auditedMethod } from '../interceptor/audited-method.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import type { AuditTargetInput } from '../interfaces/audit-service.interface.js';

/** What `@Audited` option functions receive. */
export interface AuditedCallContext {
  /**
   * The arguments the handler (or provider method) was called with, after Nest's pipes:
   * for `flag(@Param('id', ParseIntPipe) id: number, @Body() body: FlagDto)`, `[42, body]`.
   * Empty when the handler never ran (a guard or a pipe turned the call away), except for a
   * message or WebSocket event a guard turned away, where they are the transport's
   * (`[payload, context]`, `[client, payload]`): the only thing known of the call.
   */
  args: unknown[];
  /**
   * The request, when there is one: Express's or Fastify's request, the GraphQL context's
   * request, an `AuditRpcRequest` for a message handler or an `AuditWsRequest` for a gateway.
   */
  request?: AuditRequest;
  /** Route parameters of an HTTP request, e.g. `{ id: '42' }`. */
  params: Record<string, string>;
  /** What the handler returned (on success). */
  result?: unknown;
  /** What the handler threw (on failure). */
  error?: unknown;
}

/** Options of `@Audited()`. */
export interface AuditedOptions {
  /**
   * The affected resource: `{ type, id }` or an entity instance. When left out (or it
   * returns `null`/`undefined`) and the handler changed exactly one entity instance, that
   * instance is the target; when it changed several, or none, the event has no target.
   * Either way `AuditService.history()` of every instance the event changed (or linked
   * through a many-to-many relation) finds it.
   * @example target: ({ params }) => ({ type: 'order', id: params.id })
   * @example target: ({ result }) => result as Order // an entity the handler returned
   */
  target?: (call: AuditedCallContext) => AuditTargetInput | null | undefined;
  /** Why: a fixed text or one computed from the call. */
  reason?: string | ((call: AuditedCallContext) => string | null | undefined);
  /** Extra JSON context, redacted and size-bounded. */
  context?: (call: AuditedCallContext) => Record<string, unknown> | null | undefined;
}

/** The metadata `@Audited()` stores. */
export interface AuditedMetadata extends AuditedOptions {
  action: string;
}

const KNOWN = new Set(['target', 'reason', 'context']);

/**
 * Records the intent of a controller handler (or of every handler of a class), or of a
 * provider method (a cron job, a queue consumer, a service): after
 * the handler completes, one `intent` event with the actor, the request data and the
 * changes the handler made; when it throws, the same event with `outcome: 'failure'`.
 *
 * @example
 * @Patch(':id')
 * @Audited('order.updated', { target: ({ params }) => ({ type: 'order', id: params.id }) })
 * update(@Param('id') id: string, @Body() dto: UpdateOrderDto) { … }
 *
 * @throws InvalidAuditActionError at class definition when `action` is not a dotted lower-case name.
 */
export function Audited(action: string, options: AuditedOptions = {}): MethodDecorator & ClassDecorator {
  assertAuditAction(action);
  for (const [key, value] of Object.entries(options ?? {})) {
    if (!KNOWN.has(key)) throw new TypeError(`@Audited("${action}"): unknown option "${key}" (known: target, reason, context)`);
    if (value !== undefined && typeof value !== 'function' && !(key === 'reason' && typeof value === 'string')) {
      throw new TypeError(`@Audited("${action}"): option "${key}" must be a function${key === 'reason' ? ' or a string' : ''}`);
    }
  }
  const metadata: AuditedMetadata = { action, ...options };
  const setMetadata = SetMetadata(AUDITED_METADATA, metadata);
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor && typeof descriptor.value === 'function') {
      // On a provider the call itself is the unit of work (see auditedMethod); the metadata
      // goes on the method that is really called, for the interceptor and the explorer.
      descriptor.value = auditedMethod(descriptor.value as (...args: unknown[]) => unknown, metadata);
      setMetadata(target, key!, descriptor);
      return descriptor;
    }
    // On a class: each of its methods is audited with the class's action and options (see
    // auditClassMethods); the metadata on the class is what the interceptor reads for a handler.
    auditClassMethods(target as { prototype: object }, metadata);
    setMetadata(target as never);
    return undefined;
  }) as MethodDecorator & ClassDecorator;
}
