import { generateKeyPairSync } from 'node:crypto';
import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from 'nestjs-system-audit';
import { postgresConnection } from '../support/postgres.js';

/** A fresh Ed25519 key per process: the bench checks speed, not signatures. */
const BENCH_SIGNING_KEY = generateKeyPairSync('ed25519').privateKey;

/**
 * Just the audit tables and the module, on a pool of `poolSize` connections, with
 * integrity on (the integrator sequencing and signing in the background) unless
 * `integrity` is false.
 */
@Module({})
export class WriterBenchModule {
  static forRoot(schema: string, poolSize: number, integrity = true): DynamicModule {
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
        AuditModule.forRoot(integrity ? { integrity: { signingKey: BENCH_SIGNING_KEY, origin: 'bench.nestjs-system-audit/writer' } } : {}),
      ],
    };
  }
}
