import {
  Global,
  Module,
  RequestMethod,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
  type Provider,
} from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule, ModuleRef } from '@nestjs/core';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from './audit.constants.js';
import {
  AUDIT_ASYNC_OPTIONS_TYPE,
  AUDIT_MODULE_OPTIONS,
  AUDIT_OPTIONS_TYPE,
  AuditConfigurableModule,
} from './audit.module-definition.js';
import { AuditDataSources } from './capture/audit-data-sources.js';
import { AuditSubscriber } from './capture/audit.subscriber.js';
import { ChangeCapture } from './capture/change-capture.js';
import { AuditContext } from './context/audit-context.js';
import { UnitOfWorkFactory } from './context/unit-of-work.factory.js';
import { AuditEventBuilder } from './events/audit-event.builder.js';
import { UnitEvents } from './events/unit-events.js';
import { AuditIntegrator } from './integrity/integrator.js';
import { IntegrityProofs } from './integrity/integrity-proofs.js';
import { AuditPurger } from './retention/audit-purger.js';
import { AuditJournal } from './journal/audit-journal.js';
import { JournalRecovery } from './journal/journal-recovery.js';
import { AuditContextGuard } from './guard/audit-context.guard.js';
import { DeniedCalls } from './guard/denied-calls.js';
import { putGlobalGuardFirst } from './integrations/nest-global-guards.js';
import { AuditInterceptor } from './interceptor/audit.interceptor.js';
import { AuditedIntentFactory } from './interceptor/audited-intent.factory.js';
import { AuditedMethodExplorer } from './interceptor/audited-method.explorer.js';
import type { AuditModuleExtras, AuditModuleOptions } from './interfaces/audit-module-options.interface.js';
import { AuditContextMiddleware } from './middleware/audit-context.middleware.js';
import { resolveAuditOptions } from './options/audit-options.js';
import { AuditEventReader } from './read/audit-event-reader.js';
import { AuditRecorder } from './service/audit-recorder.js';
import { AuditService } from './service/audit.service.js';
import { AuditEntities } from './storage/audit-entities.js';
import { AuditWriter } from './storage/audit.writer.js';
import { bindUtcDates } from './storage/utc-date.transformer.js';
import { WsHandshakes } from './transports/ws-handshakes.js';

const providers: Provider[] = [
  {
    provide: AUDIT_RESOLVED_OPTIONS,
    useFactory: (options: AuditModuleOptions) => resolveAuditOptions(options),
    inject: [AUDIT_MODULE_OPTIONS],
  },
  AuditDataSources,
  AuditContext,
  UnitOfWorkFactory,
  WsHandshakes,
  AuditEventBuilder,
  AuditWriter,
  AuditJournal,
  UnitEvents,
  JournalRecovery,
  AuditIntegrator,
  IntegrityProofs,
  AuditPurger,
  AuditRecorder,
  AuditService,
  AuditEventReader,
  AuditContextMiddleware,
  AuditedIntentFactory,
  AuditContextGuard,
  DeniedCalls,
  AuditedMethodExplorer,
  ChangeCapture,
  AuditSubscriber,
  { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
];

/**
 * The audit module. Import it once, in the root module:
 *
 * @example
 * @Module({
 *   imports: [
 *     TypeOrmModule.forRoot({ type: 'postgres', url: process.env.DATABASE_URL, autoLoadEntities: true }),
 *     AuditModule.forRoot({ trustProxy: 'loopback' }),
 *   ],
 * })
 * export class AppModule {}
 */
@Global()
@Module({ imports: [DiscoveryModule], providers, exports: [AuditService, AuditContext, AuditEventReader] })
export class AuditModule extends AuditConfigurableModule implements NestModule {
  constructor(moduleRef: ModuleRef, guard: AuditContextGuard) {
    super();
    AuditModule.registerFirstGuard(moduleRef, guard);
  }

  /**
   * Puts the audit guard in front of every other global guard (those of APP_GUARD
   * providers are added after modules are built, those of useGlobalGuards() later still),
   * so it sees every request before an authentication guard can turn it away.
   */
  private static registerFirstGuard(moduleRef: ModuleRef, guard: AuditContextGuard): void {
    putGlobalGuardFirst(moduleRef, guard);
  }

  /** Registers the module with static options. */
  static override forRoot(options: typeof AUDIT_OPTIONS_TYPE = {}): DynamicModule {
    return AuditModule.wire(super.forRoot(options), options);
  }

  /** Registers the module with options from a factory, a class or an existing provider. */
  static override forRootAsync(options: typeof AUDIT_ASYNC_OPTIONS_TYPE): DynamicModule {
    return AuditModule.wire(super.forRootAsync(options), options);
  }

  private static wire(definition: DynamicModule, extras: AuditModuleExtras): DynamicModule {
    const dataSource = extras.dataSource;
    return {
      ...definition,
      global: true,
      imports: [...(definition.imports ?? []), TypeOrmModule.forFeature([...AuditEntities], dataSource)],
      providers: [
        ...(definition.providers ?? []),
        { provide: AUDIT_DATA_SOURCE, useFactory: (source: DataSource) => bindUtcDates(source), inject: [getDataSourceToken(dataSource)] },
      ],
      exports: [...(definition.exports ?? []), AuditService, AuditContext, AuditEventReader],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(AuditContextMiddleware).forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}
