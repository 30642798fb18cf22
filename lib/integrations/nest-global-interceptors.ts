import type { NestInterceptor } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';

/**
 * Patches: the global interceptor list of a Nest application, read through internals:
 * `moduleRef.container.applicationConfig.getGlobalInterceptors()` (the array Nest reads the
 * global interceptors from when it builds each handler's pipeline), to put one of the
 * module's interceptors at its front.
 *
 * Why: a microservice message or a WebSocket event is its own unit of work, stored by the
 * audit interceptor around its handler. An app-level interceptor outside it (an
 * `APP_INTERCEPTOR` that runs each handler in a database transaction) commits the
 * handler's changes only after the audit interceptor has let the result through, so the
 * unit can be stored only then — and the reply must wait for that, which only an
 * interceptor outside every other one can do. `APP_INTERCEPTOR` providers run in the
 * order Nest meets their modules, which a library does not control; Nest has no public
 * way to put a global interceptor first.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when the
 * application config is no longer reached this way or `getGlobalInterceptors()` no longer
 * returns an array).
 */

interface ApplicationConfig {
  getGlobalInterceptors(): NestInterceptor[];
}

/**
 * The live array of `moduleRef`'s application's global interceptors, or `undefined` for a
 * context built without an application config (it has no global interceptors).
 *
 * @throws Error when the application config is no longer reached this way.
 */
export function globalInterceptors(moduleRef: ModuleRef): NestInterceptor[] | undefined {
  const container = (moduleRef as unknown as { container?: { applicationConfig?: Partial<ApplicationConfig> } }).container;
  if (container === null || typeof container !== 'object') {
    throw new Error('nestjs-system-audit: ModuleRef.container not found; this NestJS version is not supported');
  }
  const config = container.applicationConfig;
  if (config === undefined) return undefined;
  const interceptors = typeof config.getGlobalInterceptors === 'function' ? config.getGlobalInterceptors() : undefined;
  if (!Array.isArray(interceptors)) {
    throw new Error('nestjs-system-audit: ApplicationConfig.getGlobalInterceptors() no longer returns an array; this NestJS version is not supported');
  }
  return interceptors;
}

/**
 * Puts `interceptor` in front of every other global interceptor of `moduleRef`'s
 * application (those of `APP_INTERCEPTOR` providers are added after modules are built,
 * those of `useGlobalInterceptors()` later still), once.
 */
export function putGlobalInterceptorFirst(moduleRef: ModuleRef, interceptor: NestInterceptor): void {
  const interceptors = globalInterceptors(moduleRef);
  if (interceptors && !interceptors.includes(interceptor)) interceptors.unshift(interceptor);
}
