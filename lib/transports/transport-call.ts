import type { AuditRequestInfo } from '../interfaces/audit-event.interface.js';
import type { AuditRequest } from '../interfaces/audit-module-options.interface.js';
import { bound } from '../events/json-safe.js';
import type { AuditHeaders } from './transport-request.interface.js';

/** What one handler call over a transport gives its unit of work. */
export interface TransportCall {
  /** Request data recorded with the unit's events. */
  request: AuditRequestInfo;
  /** What the actor resolver and `@Audited` options receive as the request. */
  requestObject: AuditRequest | undefined;
  /** What `recordBody` stores for the call, when not the request object's `body`. */
  body?: unknown;
}

/** More headers than this on one message are dropped: real ones carry a handful. */
const MAX_HEADERS = 64;

/** A header value as data: strings (and buffers, numbers) bounded, anything else dropped. */
function headerValue(value: unknown, max: number): string | string[] | undefined {
  if (typeof value === 'string') return bound(value, max);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Buffer.isBuffer(value)) return bound(value.subarray(0, max).toString('utf8'), max);
  if (Array.isArray(value)) {
    const values = value.slice(0, 8).flatMap((item) => {
      const one = headerValue(item, max);
      return typeof one === 'string' ? [one] : [];
    });
    return values.length ? values : undefined;
  }
  return undefined;
}

/** Collects headers from several sources into one bounded record with lower-case names. */
export class HeaderCollector {
  readonly headers: AuditHeaders = {};
  private count = 0;

  constructor(private readonly maxLength: number) {}

  add(name: unknown, value: unknown): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 128 || this.count >= MAX_HEADERS) return;
    const key = name.toLowerCase();
    if (key === '__proto__' || Object.prototype.hasOwnProperty.call(this.headers, key)) return;
    const data = headerValue(value, this.maxLength);
    if (data === undefined) return;
    this.headers[key] = data;
    this.count++;
  }

  /** Adds the entries of a plain object (or a `Map`). */
  addAll(source: unknown): void {
    if (source instanceof Map) {
      for (const [name, value] of source) this.add(name, value);
    } else if (source && typeof source === 'object' && !Array.isArray(source)) {
      for (const [name, value] of Object.entries(source)) this.add(name, value);
    }
  }
}

export const firstValue = (value: string | string[] | undefined): string | undefined =>
  Array.isArray(value) ? value[0] : value;

/** `value.user` when it is an object. */
export function userOf(value: unknown): Record<string, unknown> | undefined {
  const user = value && typeof value === 'object' ? (value as { user?: unknown }).user : undefined;
  return user && typeof user === 'object' ? (user as Record<string, unknown>) : undefined;
}

/** The path of a URL without its query string (which may hold tokens). */
export function pathOf(url: unknown): string | undefined {
  if (typeof url !== 'string' || url.length === 0) return undefined;
  const queryAt = url.indexOf('?');
  return bound(queryAt === -1 ? url : url.slice(0, queryAt), 2048);
}

/** Calls `target[method]()` when it is a method; `undefined` otherwise or when it throws. */
export function callGetter(target: unknown, method: string): unknown {
  const fn = target && typeof target === 'object' ? (target as Record<string, unknown>)[method] : undefined;
  if (typeof fn !== 'function') return undefined;
  try {
    return (fn as () => unknown).call(target);
  } catch {
    return undefined;
  }
}
