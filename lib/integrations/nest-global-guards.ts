import type { CanActivate } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';

/**
 * Patches: the global guard list of a Nest application, read through internals:
 * `moduleRef.container.applicationConfig.getGlobalGuards()` (the array Nest reads the global
 * guards from on every call), to put the module's guard at its front.
 *
 * Why: the audit guard must see every call before an authentication guard can turn it
 * away, to record denied calls. `APP_GUARD` providers run in the order Nest meets their
 * modules, which a library does not control, and `app.useGlobalGuards()` is the app's to
 * call; Nest has no public way to put a global guard first.
 *
 * Tested with NestJS 11 and 12 (`test/unit/integrations.spec.ts` fails when the
 * application config is no longer reached this way or `getGlobalGuards()` no longer
 * returns an array).
 */

interface ApplicationConfig {
  getGlobalGuards(): CanActivate[];
}

/**
 * The live array of `moduleRef`'s application's global guards, or `undefined` for a
 * context built without an application config (it has no global guards).
 *
 * @throws Error when the application config is no longer reached this way.
 */
export function globalGuards(moduleRef: ModuleRef): CanActivate[] | undefined {
  const container = (moduleRef as unknown as { container?: { applicationConfig?: Partial<ApplicationConfig> } }).container;
  if (container === null || typeof container !== 'object') {
    throw new Error('nestjs-system-audit: ModuleRef.container not found; this NestJS version is not supported');
  }
  const config = container.applicationConfig;
  if (config === undefined) return undefined;
  const guards = typeof config.getGlobalGuards === 'function' ? config.getGlobalGuards() : undefined;
  if (!Array.isArray(guards)) {
    throw new Error('nestjs-system-audit: ApplicationConfig.getGlobalGuards() no longer returns an array; this NestJS version is not supported');
  }
  return guards;
}

/**
 * Puts `guard` in front of every other global guard of `moduleRef`'s application (those of
 * `APP_GUARD` providers are added after modules are built, those of `useGlobalGuards()`
 * later still), once.
 */
export function putGlobalGuardFirst(moduleRef: ModuleRef, guard: CanActivate): void {
  const guards = globalGuards(moduleRef);
  if (guards && !guards.includes(guard)) guards.unshift(guard);
}
