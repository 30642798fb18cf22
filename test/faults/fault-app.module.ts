import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule, type TypeOrmModuleOptions } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from '../../lib/index.js';
import { ActorHeaderGuard } from './actor-header.guard.js';
import { FaultIntegrityController, KillInBatchLogger } from './fault-integrity.controller.js';
import { FaultItem } from './fault-item.entity.js';
import { FaultItemsController } from './fault-items.controller.js';

/** The `integrity.origin` (and key name) of the fault app's log, when integrity is on. */
export const FAULT_ORIGIN = 'faults.nestjs-system-audit.test/items';
/** `integrity.sequenceEvery` of the fault app. */
export const FAULT_SEQUENCE_EVERY = 100;
/** `integrity.checkpointEvery.events` of the fault app. */
export const FAULT_CHECKPOINT_EVENTS = 500;

/** Where and how the fault app runs; read from `FAULT_*` environment variables by `faultAppConfigFromEnv()`. */
export interface FaultAppConfig {
  type: 'postgres' | 'mariadb';
  host: string;
  /** The port to connect to: the runner's TCP proxy in front of the real server. */
  port: number;
  username: string;
  password: string;
  database: string;
  /** PostgreSQL schema holding the tables. */
  schema?: string;
  /** `AuditModule.forRoot({ recoverAfter })`, in ms. */
  recoverAfter: number;
  /**
   * An Ed25519 private key (PKCS#8 PEM): turns `integrity` on, signing with it as
   * {@link FAULT_ORIGIN}, and adds the `/integrity` routes. Without it, no integrity.
   */
  signingKey?: string;
}

/** The environment variables the runner passes to the app process. */
export const FAULT_ENV = {
  type: 'FAULT_DB_TYPE',
  host: 'FAULT_DB_HOST',
  port: 'FAULT_DB_PORT',
  username: 'FAULT_DB_USER',
  password: 'FAULT_DB_PASSWORD',
  database: 'FAULT_DB_NAME',
  schema: 'FAULT_DB_SCHEMA',
  recoverAfter: 'FAULT_RECOVER_AFTER',
  signingKey: 'FAULT_SIGNING_KEY',
} as const satisfies Record<keyof FaultAppConfig, string>;

export function faultAppConfigFromEnv(env: NodeJS.ProcessEnv = process.env): FaultAppConfig {
  const required = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === '') throw new Error(`fault app: environment variable ${name} is not set`);
    return value;
  };
  const type = required(FAULT_ENV.type);
  if (type !== 'postgres' && type !== 'mariadb') throw new Error(`fault app: ${FAULT_ENV.type}=${type} (postgres or mariadb)`);
  return {
    type,
    host: required(FAULT_ENV.host),
    port: Number(required(FAULT_ENV.port)),
    username: required(FAULT_ENV.username),
    password: env[FAULT_ENV.password] ?? '',
    database: required(FAULT_ENV.database),
    ...(env[FAULT_ENV.schema] ? { schema: env[FAULT_ENV.schema] } : {}),
    recoverAfter: Number(env[FAULT_ENV.recoverAfter] ?? 3000),
    ...(env[FAULT_ENV.signingKey] ? { signingKey: env[FAULT_ENV.signingKey] } : {}),
  };
}

/** The same config as environment variables, for the app's child process. */
export function faultAppEnv(config: FaultAppConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, name] of Object.entries(FAULT_ENV)) {
    const value = config[key as keyof FaultAppConfig];
    if (value !== undefined) env[name] = String(value);
  }
  return env;
}

/**
 * The fault app: `FaultItem` and the audit module's entities on one data source, the
 * audit tables made by `AuditMigrations` (the runner creates `fault_item`), the module
 * with a short `recoverAfter`, and a guard that takes the actor from a header. With
 * `signingKey`: `integrity` on, and the routes of fault-integrity.controller.ts.
 */
@Module({})
export class FaultAppModule {
  static forRoot(config: FaultAppConfig): DynamicModule {
    const connection: TypeOrmModuleOptions =
      config.type === 'postgres'
        ? {
            type: 'postgres',
            host: config.host,
            port: config.port,
            username: config.username,
            password: config.password,
            database: config.database,
            ...(config.schema ? { schema: config.schema } : {}),
            extra: { max: 20, connectionTimeoutMillis: 5000 },
          }
        : {
            type: 'mariadb',
            host: config.host,
            port: config.port,
            username: config.username,
            password: config.password,
            database: config.database,
            extra: { connectionLimit: 20, connectTimeout: 5000 },
          };
    const integrity = config.signingKey
      ? {
          signingKey: config.signingKey,
          origin: FAULT_ORIGIN,
          sequenceEvery: FAULT_SEQUENCE_EVERY,
          checkpointEvery: { events: FAULT_CHECKPOINT_EVENTS },
        }
      : undefined;
    return {
      module: FaultAppModule,
      imports: [
        TypeOrmModule.forRoot({
          ...connection,
          ...(integrity ? { logger: new KillInBatchLogger() } : {}),
          entities: [...AuditEntities, FaultItem],
          migrations: AuditMigrations,
          migrationsRun: true,
          synchronize: false,
          logging: false,
          retryAttempts: 3,
          retryDelay: 1000,
        }),
        AuditModule.forRoot({ recoverAfter: config.recoverAfter, ...(integrity ? { integrity } : {}) }),
      ],
      controllers: [FaultItemsController, ...(integrity ? [FaultIntegrityController] : [])],
      providers: [{ provide: APP_GUARD, useClass: ActorHeaderGuard }],
    };
  }
}
