import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { AuditModuleExtras, AuditModuleOptions } from './interfaces/audit-module-options.interface.js';

export const {
  ConfigurableModuleClass: AuditConfigurableModule,
  MODULE_OPTIONS_TOKEN: AUDIT_MODULE_OPTIONS,
  OPTIONS_TYPE: AUDIT_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: AUDIT_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<AuditModuleOptions>({ moduleName: 'Audit' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createAuditOptions')
  .setExtras<AuditModuleExtras>({ dataSource: undefined }, (definition) => definition)
  .build();
