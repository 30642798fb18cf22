import {
  Global,
  Module,
  RequestMethod,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
  type Provider,
} from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule, ModuleRef, ModulesContainer } from '@nestjs/core';
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
import { checkAsyncOptions, withCheckedOptionsFactory, type AsyncRegistration } from './options/async-options.js';
import { JournalRecovery } from './journal/journal-recovery.js';
import { AuditContextGuard } from './guard/audit-context.guard.js';
import { DeniedCalls } from './guard/denied-calls.js';
import { InvalidAuditOptionsError } from './exceptions/invalid-audit-options.error.js';
import { putGlobalGuardFirst } from './integrations/nest-global-guards.js';
import { keepAuditTablesOnMariaDbThroughMysqlDriver } from './integrations/typeorm-mariadb-synchronize.js';
import { AuditInterceptor } from './interceptor/audit.interceptor.js';
import { AuditReplyInterceptor } from './interceptor/audit-reply.interceptor.js';
import { CallUnits } from './interceptor/call-units.js';
import { putGlobalInterceptorFirst } from './integrations/nest-global-interceptors.js';
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
import { ClientReplies } from './transports/client-replies.js';
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
  ClientReplies,
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
  CallUnits,
  AuditReplyInterceptor,
  AuditedMethodExplorer,
  ChangeCapture,
  AuditSubscriber,
  { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
];

/** How `forRootAsync()` is checked and its errors name it. */
const ASYNC_REGISTRATION: AsyncRegistration = {
  moduleName: 'AuditModule',
  method: 'forRootAsync',
  factoryMethod: 'createAuditOptions',
  token: AUDIT_MODULE_OPTIONS,
};

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
  constructor(moduleRef: ModuleRef, guard: AuditContextGuard, reply: AuditReplyInterceptor) {
    super();
    AuditModule.registerFirstGuard(moduleRef, guard);
    // Outside every other interceptor: a message's reply waits for its unit's events (see AuditReplyInterceptor).
    putGlobalInterceptorFirst(moduleRef, reply);
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
    // `null` as no options, as resolveAuditOptions() takes it; anything else that is not an object is refused here.
    const given = (options ?? {}) as unknown;
    if (typeof given !== 'object' || Array.isArray(given)) throw new InvalidAuditOptionsError('options', 'must be an object');
    return AuditModule.wire(super.forRoot(given as typeof AUDIT_OPTIONS_TYPE), given as typeof AUDIT_OPTIONS_TYPE);
  }

  /** Registers the module with options from a factory, a class or an existing provider. */
  static override forRootAsync(options: typeof AUDIT_ASYNC_OPTIONS_TYPE): DynamicModule {
    checkAsyncOptions(ASYNC_REGISTRATION, options);
    return AuditModule.wire(withCheckedOptionsFactory(ASYNC_REGISTRATION, super.forRootAsync(options), options), options);
  }

  private static wire(definition: DynamicModule, extras: AuditModuleExtras): DynamicModule {
    const dataSource: unknown = extras.dataSource;
    if (dataSource !== undefined && (typeof dataSource !== 'string' || dataSource.trim() === '')) {
      throw new InvalidAuditOptionsError('dataSource', `must be the name of a TypeORM data source, got ${JSON.stringify(dataSource) ?? String(dataSource)}`);
    }
    // Before any data source initializes: its synchronize must not empty the audit tables.
    keepAuditTablesOnMariaDbThroughMysqlDriver();
    // Registers the module's entities with the data source for `autoLoadEntities`; its
    // repositories are not used (the data source is looked up by AUDIT_DATA_SOURCE below).
    TypeOrmModule.forFeature([...AuditEntities], dataSource);
    return {
      ...definition,
      global: true,
      providers: [
        ...(definition.providers ?? []),
        {
          provide: AUDIT_DATA_SOURCE,
          useFactory: (source: DataSource | undefined, options: Record<string, unknown> | undefined, modules: ModulesContainer) =>
            bindUtcDates(AuditModule.auditDataSource(dataSource, source, options, modules)),
          inject: [{ token: getDataSourceToken(dataSource), optional: true }, AUDIT_MODULE_OPTIONS, ModulesContainer],
        },
      ],
      exports: [...(definition.exports ?? []), AuditService, AuditContext, AuditEventReader],
    };
  }

  /**
   * The data source `dataSource` names, or a start-up failure naming the option: when no
   * TypeORM data source has that name, or when a `forRootAsync` factory returned another
   * one (the data source is wired before any factory runs).
   */
  private static auditDataSource(
    name: string | undefined,
    source: DataSource | undefined,
    options: Record<string, unknown> | undefined,
    modules: ModulesContainer,
  ): DataSource {
    const given = options?.['dataSource'];
    if (given !== undefined && given !== name) {
      throw new InvalidAuditOptionsError(
        'dataSource',
        'is read when the module is wired, before the factory runs: pass it to forRootAsync() beside useFactory ' +
          `(forRootAsync({ dataSource: ${JSON.stringify(given)}, useFactory })), not in the options the factory returns`,
      );
    }
    if (source) return source;
    const known = AuditModule.dataSourceNames(modules).map((known) => `"${known}"`);
    throw new InvalidAuditOptionsError('dataSource', `no TypeORM data source named "${name ?? 'default'}" (known: ${known.join(', ') || 'none'})`);
  }

  /** The names of the TypeORM data sources the app registers (`TypeOrmModule.forRoot`). */
  private static dataSourceNames(modules: ModulesContainer): string[] {
    const names: string[] = [];
    const defaultToken = getDataSourceToken();
    for (const module of modules.values()) {
      if (module.metatype?.name !== 'TypeOrmCoreModule') continue;
      for (const token of module.providers.keys()) {
        if (token === defaultToken) names.push('default');
        else if (typeof token === 'string' && token.endsWith('DataSource')) names.push(token.slice(0, -'DataSource'.length));
      }
    }
    return [...new Set(names)];
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(AuditContextMiddleware).forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}
