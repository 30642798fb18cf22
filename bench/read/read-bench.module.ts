import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Logger, QueryRunner } from 'typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from 'nestjs-system-audit';
import { mariadbConnection } from '../support/mariadb.js';
import { postgresConnection } from '../support/postgres.js';
import type { ReadDatabase } from './seed.js';

/** One statement TypeORM ran, with its parameters. */
export interface CapturedQuery {
  sql: string;
  parameters: unknown[];
}

/** A TypeORM logger that, while `capturing`, keeps the statements run; silent otherwise but for errors. */
export class CapturingLogger implements Logger {
  capturing = false;
  /** At most this many statements are kept (an export runs a statement per page). */
  captureLimit = Number.POSITIVE_INFINITY;
  readonly queries: CapturedQuery[] = [];

  logQuery(query: string, parameters?: unknown[], _queryRunner?: QueryRunner): void {
    if (this.capturing && this.queries.length < this.captureLimit) this.queries.push({ sql: query, parameters: parameters ?? [] });
  }
  logQueryError(error: string | Error, query: string): void {
    console.error(`query failed: ${error instanceof Error ? error.message : error}\n  ${query}`);
  }
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(level: 'log' | 'info' | 'warn', message: unknown): void {
    if (level === 'warn') console.warn(message);
  }
}

/** The audit tables (created by `AuditMigrations`) in `place` and the module, every statement through `logger`. */
@Module({})
export class ReadBenchModule {
  static forRoot(kind: ReadDatabase, place: string, logger: CapturingLogger): DynamicModule {
    return {
      module: ReadBenchModule,
      imports: [
        TypeOrmModule.forRoot({
          ...(kind === 'postgres' ? postgresConnection(place) : mariadbConnection(place)),
          entities: [...AuditEntities],
          migrations: AuditMigrations,
          migrationsRun: true,
          logger,
          logging: true,
          ...(kind === 'postgres' ? { extra: { max: 4 } } : { extra: { connectionLimit: 4 } }),
        }),
        AuditModule.forRoot(),
      ],
    };
  }
}
