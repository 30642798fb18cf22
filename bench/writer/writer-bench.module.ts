import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from 'nestjs-system-audit';
import { postgresConnection } from '../support/postgres.js';

/** Just the audit table and the module, on a pool of `poolSize` connections. */
@Module({})
export class WriterBenchModule {
  static forRoot(schema: string, poolSize: number): DynamicModule {
    return {
      module: WriterBenchModule,
      imports: [
        TypeOrmModule.forRoot({
          ...postgresConnection(schema),
          entities: [...AuditEntities],
          migrations: AuditMigrations,
          migrationsRun: true,
          extra: { max: poolSize },
        }),
        AuditModule.forRoot(),
      ],
    };
  }
}
