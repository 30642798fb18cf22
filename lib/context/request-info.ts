import { uuidv7 } from '../events/uuid-v7.js';
import { bound } from '../events/json-safe.js';
import { normaliseName, REDACTED } from '../events/redaction.js';
import type { AuditRequestInfo } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { clientIp } from './client-ip.js';

/** What the module reads from an Express request, a Fastify request or a raw Node request. */
export interface HttpRequestLike {
  headers: Record<string, string | string[] | undefined>;
  method?: string;
  url?: string;
  originalUrl?: string;
  socket?: { remoteAddress?: string } | null;
  /** The route's parameters, once routing is done. */
  params?: unknown;
  raw?: HttpRequestLike;
  route?: { path?: unknown };
  baseUrl?: string;
  routeOptions?: { url?: string };
  routerPath?: string;
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** The incoming request id if it is well-formed and bounded, else a new one. */
export function resolveRequestId(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && REQUEST_ID.test(value) ? value : uuidv7();
}

const firstHeader = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/** Masks secret-looking query parameters, for the `recordQueryString` option. */
function redactQuery(query: string, isSecret: (key: string) => boolean): string {
  return query
    .split('&')
    .map((pair) => {
      const [key = '', ...rest] = pair.split('=');
      let name = key;
      try {
        name = decodeURIComponent(key);
      } catch {
        // keep the raw key
      }
      return rest.length && isSecret(name) ? `${key}=[REDACTED]` : pair;
    })
    .join('&');
}

/**
 * The client's address: the socket's, or, through the hops `trustProxy` trusts (none by
 * default), the address `X-Forwarded-For` names. The framework's own reading (Express's
 * `req.ip`, Fastify's `request.ip`) is not used: its trust settings are the app's, made
 * for other purposes, and the record's IP follows the module's option alone.
 */
function readClientIp(raw: HttpRequestLike, options: ResolvedAuditOptions): string | undefined {
  return clientIp(raw.socket?.remoteAddress, raw.headers['x-forwarded-for'], options.trustProxy, options.maxHeaderLength);
}

/**
 * The values of the route parameters whose names look secret (per `secretPathParams` and
 * the redaction rules): a wildcard's value counts segment by segment.
 */
function secretParamValues(request: HttpRequestLike, options: ResolvedAuditOptions): string[] {
  const params = request.params ?? request.raw?.params;
  const values: string[] = [];
  if (params && typeof params === 'object') {
    for (const [name, value] of Object.entries(params as Record<string, unknown>)) {
      if (!options.isSecretPathParam(name)) continue;
      for (const item of Array.isArray(value) ? value : [value]) {
        if (typeof item !== 'string' || item.length === 0) continue;
        values.push(item);
        if (item.includes('/')) values.push(...item.split('/').filter((part) => part.length > 0));
      }
    }
  }
  return values;
}

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
};

/**
 * `pathname` with every segment that holds one of the secret values replaced by
 * `[REDACTED]`: the segments equal to it, or, when none is (a parameter that shares its
 * segment, `/:token.json`), every segment that contains it.
 */
function maskSegments(pathname: string, secrets: readonly string[]): string {
  if (secrets.length === 0) return pathname;
  const segments = pathname.split('/');
  const decoded = segments.map(decodeSegment);
  const masked = new Set<number>();
  for (const secret of secrets) {
    const equal = segments.flatMap((segment, i) => (segment === secret || decoded[i] === secret ? [i] : []));
    const found = equal.length ? equal : segments.flatMap((segment, i) => (segment.includes(secret) || decoded[i]!.includes(secret) ? [i] : []));
    for (const i of found) masked.add(i);
  }
  return segments.map((segment, i) => (masked.has(i) ? REDACTED : segment)).join('/');
}

/**
 * Whether a query parameter's value is masked in a recorded path: a secret-looking name
 * (per the redaction rules, or as for route parameters, `secretPathParams`: `code`, `key`,
 * `signature`, …), and, when actor ids are stored as pseudonyms (`pseudonymize`), an actor id (`actorId`,
 * `actor_id`, any case), so that a clear id searched for — the viewer's search, an app's
 * own audit search — is not stored beside its pseudonym.
 */
function maskedInQuery(key: string, options: ResolvedAuditOptions): boolean {
  return options.isSecretPathParam(key) || (options.pseudonymizer !== undefined && normaliseName(key) === 'actorid');
}

/**
 * The path to record: without the query string unless `recordQueryString` is set (then
 * secrets in it are masked), with the segments of secret route parameters masked, and
 * nothing with `recordPath: false`.
 */
function recordedPath(request: HttpRequestLike, raw: HttpRequestLike, options: ResolvedAuditOptions, secrets: readonly string[]): string | undefined {
  if (!options.recordPath) return undefined;
  const url = request.originalUrl ?? raw.originalUrl ?? raw.url ?? request.url ?? '';
  const queryAt = url.indexOf('?');
  const pathname = maskSegments(queryAt === -1 ? url : url.slice(0, queryAt), secrets);
  const path =
    options.recordQueryString && queryAt !== -1 ? `${pathname}?${redactQuery(url.slice(queryAt + 1), (key) => maskedInQuery(key, options))}` : pathname;
  return bound(path, 2048);
}

/**
 * Request data of an HTTP request. Header values are bounded and kept as data; the
 * query string is left out unless `recordQueryString` is set (then secrets in it are
 * masked). Route parameters are not known yet: {@link readRoute} masks the secret ones
 * once routing is done.
 */
export function readHttpRequest(
  request: HttpRequestLike,
  options: ResolvedAuditOptions,
  requestId: string,
): AuditRequestInfo {
  const raw = request.raw ?? request;
  const max = options.maxHeaderLength;
  return {
    ip: readClientIp(raw, options),
    userAgent: bound(firstHeader(raw.headers['user-agent']), max),
    method: bound(raw.method ?? request.method, 16),
    path: recordedPath(request, raw, options, []),
    requestId,
  };
}

/**
 * The request data routing decides, once it is done: the route pattern (`/orders/:id`)
 * and the path, read again with the segments of secret route parameters masked.
 * `undefined` before routing.
 */
export function readRoute(request: HttpRequestLike, options: ResolvedAuditOptions): Pick<AuditRequestInfo, 'route' | 'path'> | undefined {
  const route = routePattern(request);
  if (route === undefined) return undefined;
  const raw = request.raw ?? request;
  return { route, path: recordedPath(request, raw, options, secretParamValues(request, options)) };
}

/**
 * `info` with the route and path of {@link readRoute}, as a new object when they differ
 * (the stored form of a unit's request data is computed once per object), else `info`.
 */
export function withRoute(info: AuditRequestInfo, request: HttpRequestLike, options: ResolvedAuditOptions): AuditRequestInfo {
  const routed = readRoute(request, options);
  if (!routed || (routed.route === info.route && routed.path === info.path)) return info;
  const next: AuditRequestInfo = { ...info, route: routed.route };
  if (routed.path === undefined) delete next.path;
  else next.path = routed.path;
  return next;
}

/** The route pattern the framework matched (`/orders/:id`), once routing is done. */
export function routePattern(request: HttpRequestLike): string | undefined {
  if (request.routeOptions?.url) return request.routeOptions.url;
  if (typeof request.routerPath === 'string') return request.routerPath;
  if (request.route && typeof request.route.path === 'string') return `${request.baseUrl ?? ''}${request.route.path}`;
  return undefined;
}
