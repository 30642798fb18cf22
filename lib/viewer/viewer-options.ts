import { describe as describeValue } from '../read/audit-query.js';
import type { CanActivate, Type } from '@nestjs/common';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';
import type { AuditViewerGuard, AuditViewerModuleOptions } from '../interfaces/audit-viewer-options.interface.js';

/** `AuditViewerModule` options with their defaults applied. */
export interface ResolvedViewerOptions {
  guard: AuditViewerGuard;
  pageSize: number;
  timelineLimit: number;
  title: string;
}

const KNOWN = new Set(['guard', 'pageSize', 'timelineLimit', 'title']);

const fail = (option: string, problem: string): never => {
  throw new InvalidAuditOptionsError(option, problem, 'AuditViewerModule');
};

/**
 * Checks the options and merges the defaults (the one place they are merged).
 * @throws InvalidAuditOptionsError naming the option at fault (`guard` when there is none).
 */
export function resolveViewerOptions(options: AuditViewerModuleOptions | undefined): ResolvedViewerOptions {
  if (options === null || typeof options !== 'object') fail('options', 'must be an object such as { guard: AdminGuard }');
  const raw = options as unknown as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (key === 'path') {
      // register() takes `path` off before this; only a registerAsync() factory can give it here.
      fail('path', `is read when the module is wired, before the factory runs: pass it to registerAsync() beside useFactory (registerAsync({ path: ${JSON.stringify(raw['path'])}, useFactory })), not in the options the factory returns`);
    }
    if (!KNOWN.has(key)) fail(key, `is not an AuditViewerModule option (known: path, ${[...KNOWN].join(', ')})`);
  }
  const guard = raw['guard'];
  if (guard === undefined || guard === null) {
    fail('guard', 'is required: a CanActivate class or instance that lets only those allowed to read the audit trail through');
  }
  if (!isGuardClass(guard) && !isGuardInstance(guard)) {
    fail('guard', `must be a CanActivate class or instance (an object with canActivate()), got ${describe(guard)}`);
  }
  const whole = (option: string, fallback: number, max: number): number => {
    const value = raw[option];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      fail(option, `must be a whole number from 1 to ${max}, got ${describeValue(value)}`);
    }
    return value as number;
  };
  const title = raw['title'] ?? 'Audit trail';
  if (typeof title !== 'string' || title.trim() === '') fail('title', `must be a non-empty string, got ${JSON.stringify(title)}`);
  return {
    guard: guard as AuditViewerGuard,
    pageSize: whole('pageSize', 50, 1000),
    timelineLimit: whole('timelineLimit', 500, 10_000),
    title: title as string,
  };
}

/**
 * Checks the mount path (given statically to `register()` and `registerAsync()`).
 * @throws InvalidAuditOptionsError naming `path`.
 */
export function resolveViewerPath(path: unknown): string {
  const plain = typeof path === 'string' && /^\/?[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*\/?$/.test(path);
  if (!plain || (path as string).split('/').some((segment) => /^\.+$/.test(segment))) {
    fail('path', `must be a URL path of plain segments such as "/audit" or "/admin/audit", got ${JSON.stringify(path)}`);
  }
  return `/${(path as string).replace(/^\/+|\/+$/g, '')}`;
}

export function isGuardClass(value: unknown): value is Type<CanActivate> {
  return typeof value === 'function' && typeof (value.prototype as Partial<CanActivate> | undefined)?.canActivate === 'function';
}

function isGuardInstance(value: unknown): value is CanActivate {
  return typeof value === 'object' && value !== null && typeof (value as Partial<CanActivate>).canActivate === 'function';
}

function describe(value: unknown): string {
  if (typeof value === 'function') return `the function ${value.name || '(anonymous)'} (a class without canActivate())`;
  if (typeof value === 'object' && value !== null) return 'an object without canActivate()';
  return JSON.stringify(value) ?? typeof value;
}
