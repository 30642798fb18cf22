import type { ExecutionContext } from '@nestjs/common';
import { bound } from '../events/json-safe.js';
import type { AuditRequestInfo } from '../interfaces/audit-event.interface.js';
import type { HttpRequestLike } from '../context/request-info.js';

/** The parts of GraphQL's `GraphQLResolveInfo` the module reads. */
interface ResolveInfoLike {
  fieldName?: unknown;
  parentType?: { name?: unknown } | null;
  operation?: { operation?: unknown; name?: { value?: unknown } | null } | null;
  variableValues?: unknown;
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

/** What `recordBody` stores for a resolver call: the operation, never the query text. */
export interface GraphqlBody {
  /** `query`, `mutation` or `subscription`. */
  operationType?: string;
  operationName?: string;
  /** The operation's variables, as given (redacted by name when stored). */
  variables?: Record<string, unknown>;
}

/**
 * The body `recordBody` stores for a resolver call: the operation's type and name, and its
 * variables (redacted by name like any field when the event is stored). Never the query
 * text: it may carry secrets as literals (`changePassword(current: "…")`).
 */
export function readGraphqlBody(ctx: ExecutionContext): GraphqlBody {
  const info = ctx.getArgByIndex<ResolveInfoLike | undefined>(3);
  const type = info?.operation?.operation;
  const name = info?.operation?.name?.value;
  const variables = info?.variableValues;
  return {
    ...(typeof type === 'string' ? { operationType: bound(type, 16) } : {}),
    ...(typeof name === 'string' ? { operationName: bound(name, 2048) } : {}),
    ...(variables && typeof variables === 'object' && Object.keys(variables).length > 0
      ? { variables: variables as Record<string, unknown> }
      : {}),
  };
}
