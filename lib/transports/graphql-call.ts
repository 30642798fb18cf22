import type { ExecutionContext } from '@nestjs/common';
import { bound } from '../events/json-safe.js';
import type { AuditRequestInfo } from '../interfaces/audit-event.interface.js';
import type { HttpRequestLike } from '../context/request-info.js';

/** The parts of GraphQL's `GraphQLResolveInfo` the module reads. */
interface ResolveInfoLike {
  fieldName?: unknown;
  parentType?: { name?: unknown } | null;
  operation?: { operation?: unknown; name?: { value?: unknown } | null } | null;
}

/** The GraphQL context of a resolver call: `context: ({ req }) => ({ req })`, or what a driver or subscription server puts there. */
interface GraphqlContextLike {
  req?: HttpRequestLike;
  request?: HttpRequestLike;
  extra?: { request?: HttpRequestLike } | null;
}

const isRequest = (value: unknown): value is HttpRequestLike =>
  !!value && typeof value === 'object' && typeof (value as { headers?: unknown }).headers === 'object';

/**
 * The HTTP request under a resolver call: the GraphQL context's `req` (Express, and
 * what Nest's Apollo driver passes by default), `request` (Fastify), or `extra.request`
 * (the upgrade request of a graphql-ws subscription).
 */
export function graphqlRequestOf(ctx: ExecutionContext): HttpRequestLike | undefined {
  const context = ctx.getArgByIndex<GraphqlContextLike | undefined>(2);
  if (!context || typeof context !== 'object') return undefined;
  for (const candidate of [context.req, context.request, context.extra?.request]) {
    if (isRequest(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The operation of a resolver call: method = its type in upper case (`QUERY`,
 * `MUTATION`, `SUBSCRIPTION`), route = `<parent type>.<field>` (`Mutation.updateOrder`),
 * path = the operation's name, when it has one.
 */
export function readGraphqlOperation(ctx: ExecutionContext): Pick<AuditRequestInfo, 'method' | 'route' | 'path'> {
  const info = ctx.getArgByIndex<ResolveInfoLike | undefined>(3);
  const type = info?.operation?.operation;
  const parent = info?.parentType?.name;
  const field = info?.fieldName;
  const name = info?.operation?.name?.value;
  return {
    method: typeof type === 'string' ? bound(type.toUpperCase(), 16) : undefined,
    route: typeof parent === 'string' && typeof field === 'string' ? bound(`${parent}.${field}`, 512) : undefined,
    path: typeof name === 'string' ? bound(name, 2048) : undefined,
  };
}
