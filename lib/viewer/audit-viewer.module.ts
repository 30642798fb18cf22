import { Module, type CanActivate, type DynamicModule } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { AuditViewerModuleExtras } from '../interfaces/audit-viewer-options.interface.js';
import { viewerController } from './audit-viewer.controller.js';
import {
  AUDIT_VIEWER_ASYNC_OPTIONS_TYPE,
  AUDIT_VIEWER_GUARD,
  AUDIT_VIEWER_MODULE_OPTIONS,
  AUDIT_VIEWER_OPTIONS_TYPE,
  AUDIT_VIEWER_RESOLVED_OPTIONS,
  AuditViewerConfigurableModule,
} from './audit-viewer.module-definition.js';
import { ViewerAccessGuard } from './viewer-access.guard.js';
import { ViewerErrorFilter } from './viewer-error.filter.js';
import { isGuardClass, resolveViewerOptions, resolveViewerPath, type ResolvedViewerOptions } from './viewer-options.js';

/**
 * A read-only audit trail viewer: server-rendered pages (no JavaScript) to search the
 * trail, open an event with its field diffs and inclusion proof, and follow a target's
 * timeline. Every page view is itself recorded as an `audit.viewed` event. Needs
 * `AuditModule.forRoot()` in the application.
 *
 * @example
 * @Module({
 *   imports: [
 *     AuditModule.forRoot(),
 *     AuditViewerModule.register({ path: '/audit', guard: AdminGuard }),
 *   ],
 * })
 * export class AppModule {}
 *
 * @throws InvalidAuditOptionsError at start-up without `guard`, or with an invalid option.
 */
@Module({})
export class AuditViewerModule extends AuditViewerConfigurableModule {
  /** Mounts the viewer at `path` with static options. */
  static override register(options: typeof AUDIT_VIEWER_OPTIONS_TYPE): DynamicModule {
    return AuditViewerModule.wire(super.register(options), options);
  }

  /**
   * Mounts the viewer at `path` (given here: routes exist before providers are made),
   * with the other options (`guard` included) from a factory, a class or an existing provider.
   */
  static override registerAsync(options: typeof AUDIT_VIEWER_ASYNC_OPTIONS_TYPE): DynamicModule {
    return AuditViewerModule.wire(super.registerAsync(options), options);
  }

  private static wire(definition: DynamicModule, extras: Partial<AuditViewerModuleExtras>): DynamicModule {
    const path = resolveViewerPath(extras?.path ?? '/audit');
    return {
      ...definition,
      controllers: [viewerController(path)],
      providers: [
        ...(definition.providers ?? []),
        { provide: AUDIT_VIEWER_RESOLVED_OPTIONS, useFactory: resolveViewerOptions, inject: [AUDIT_VIEWER_MODULE_OPTIONS] },
        {
          provide: AUDIT_VIEWER_GUARD,
          useFactory: (options: ResolvedViewerOptions, moduleRef: ModuleRef): CanActivate | Promise<CanActivate> =>
            isGuardClass(options.guard) ? moduleRef.create(options.guard) : options.guard,
          inject: [AUDIT_VIEWER_RESOLVED_OPTIONS, ModuleRef],
        },
        ViewerAccessGuard,
        ViewerErrorFilter,
      ],
    };
  }
}
