import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { AuditViewerModuleExtras, AuditViewerModuleOptions } from '../interfaces/audit-viewer-options.interface.js';

export const {
  ConfigurableModuleClass: AuditViewerConfigurableModule,
  MODULE_OPTIONS_TOKEN: AUDIT_VIEWER_MODULE_OPTIONS,
  OPTIONS_TYPE: AUDIT_VIEWER_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: AUDIT_VIEWER_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<AuditViewerModuleOptions>({ moduleName: 'AuditViewer' })
  .setClassMethodName('register')
  .setFactoryMethodName('createAuditViewerOptions')
  .setExtras<AuditViewerModuleExtras>({ path: '/audit' }, (definition) => definition)
  .build();

/** The viewer's options, defaults merged and checked. Internal. */
export const AUDIT_VIEWER_RESOLVED_OPTIONS = Symbol('AUDIT:VIEWER_RESOLVED_OPTIONS');
/** The guard instance the viewer's pages run. Internal. */
export const AUDIT_VIEWER_GUARD = Symbol('AUDIT:VIEWER_GUARD');
/**
 * Metadata naming a route's page (`search`, `event`, `timeline`), or `asset` for the
 * stylesheet, which is served without the application's guard (it holds no trail data).
 */
export const AUDIT_VIEWER_PAGE = 'audit:viewer-page';
