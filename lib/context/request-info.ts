import { uuidv7 } from '../events/uuid-v7.js';
import { bound } from '../events/json-safe.js';
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
 * Request data of an HTTP request. Header values are bounded and kept as data; the
 * query string is left out unless `recordQueryString` is set (then secrets in it are
 * masked).
 */
export function readHttpRequest(
  request: HttpRequestLike,
  options: ResolvedAuditOptions,
  requestId: string,
): AuditRequestInfo {
  const raw = request.raw ?? request;
  const max = options.maxHeaderLength;
  const url = request.originalUrl ?? raw.originalUrl ?? raw.url ?? request.url ?? '';
  const queryAt = url.indexOf('?');
  const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
  const path =
    options.recordQueryString && queryAt !== -1
      ? `${pathname}?${redactQuery(url.slice(queryAt + 1), (key) => options.redactor.isSecret(key))}`
      : pathname;
  return {
    ip: clientIp(raw.socket?.remoteAddress, raw.headers['x-forwarded-for'], options.trustProxy, max),
    userAgent: bound(firstHeader(raw.headers['user-agent']), max),
    method: bound(raw.method ?? request.method, 16),
    path: bound(path, 2048),
    requestId,
  };
}

/** The route pattern the framework matched (`/orders/:id`), once routing is done. */
export function routePattern(request: HttpRequestLike): string | undefined {
  if (request.routeOptions?.url) return request.routeOptions.url;
  if (typeof request.routerPath === 'string') return request.routerPath;
  if (request.route && typeof request.route.path === 'string') return `${request.baseUrl ?? ''}${request.route.path}`;
  return undefined;
}
