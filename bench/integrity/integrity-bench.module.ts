import type { KeyObject } from 'node:crypto';
import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from 'nestjs-system-audit';
import { postgresConnection } from '../support/postgres.js';

/**
 * The audit tables and the module with integrity on; the background integrator idle (the
 * bench drives it) unless `sequenceEvery` is given.
 */
@Module({})
export class IntegrityBenchModule {
  static forRoot(schema: string, signingKey: KeyObject, sequenceEvery = 60_000): DynamicModule {
    return {
      module: IntegrityBenchModule,
      imports: [
        TypeOrmModule.forRoot({
          ...postgresConnection(schema),
          entities: [...AuditEntities],
          migrations: AuditMigrations,
          migrationsRun: true,
          extra: { max: 8 },
        }),
        AuditModule.forRoot({ integrity: { signingKey, origin: 'bench.nestjs-system-audit/integrity', sequenceEvery } }),
      ],
    };
  }
}
