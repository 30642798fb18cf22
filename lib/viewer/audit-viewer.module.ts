import { Module, type CanActivate, type DynamicModule } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { AuditViewerModuleExtras, AuditViewerModuleOptions } from '../interfaces/audit-viewer-options.interface.js';
import { checkAsyncOptions, withCheckedOptionsFactory, type AsyncRegistration } from '../options/async-options.js';
import { AuditService } from '../service/audit.service.js';
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

/** How `registerAsync()` is checked and its errors name it. */
const ASYNC_REGISTRATION: AsyncRegistration = {
  moduleName: 'AuditViewerModule',
  method: 'registerAsync',
  factoryMethod: 'createAuditViewerOptions',
  token: AUDIT_VIEWER_MODULE_OPTIONS,
};

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
    checkAsyncOptions(ASYNC_REGISTRATION, options);
    return AuditViewerModule.wire(withCheckedOptionsFactory(ASYNC_REGISTRATION, super.registerAsync(options), options), options);
  }

  private static wire(definition: DynamicModule, extras: Partial<AuditViewerModuleExtras>): DynamicModule {
    const path = resolveViewerPath(extras?.path ?? '/audit');
    return {
      ...definition,
      controllers: [viewerController(path)],
      providers: [
        ...(definition.providers ?? []),
        {
          provide: AUDIT_VIEWER_RESOLVED_OPTIONS,
          useFactory: (options: AuditViewerModuleOptions | undefined, audit: AuditService | undefined) => {
            if (!audit) throw new Error('AuditViewerModule needs AuditModule: import AuditModule.forRoot() or AuditModule.forRootAsync() in the application');
            return resolveViewerOptions(options);
          },
          inject: [AUDIT_VIEWER_MODULE_OPTIONS, { token: AuditService, optional: true }],
        },
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
