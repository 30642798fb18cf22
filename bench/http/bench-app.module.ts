import { generateKeyPairSync } from 'node:crypto';
import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule } from 'nestjs-system-audit';
import type { DemoUser } from '../../sample-app/auth/demo-users.js';
import { TokenGuard } from '../../sample-app/auth/token.guard.js';
import { OrderNote } from '../../sample-app/orders/order-note.entity.js';
import { Order } from '../../sample-app/orders/order.entity.js';
import { OrdersController } from '../../sample-app/orders/orders.controller.js';
import { OrdersService } from '../../sample-app/orders/orders.service.js';
import { postgresConnection } from '../support/postgres.js';
import { NaiveAuditSubscriber } from './naive-audit.subscriber.js';

/**
 * - `disabled`: `AuditModule.forRoot({ enabled: false })`, the baseline;
 * - `module`: the module on, configured as the sample app configures it, with `integrity` on;
 * - `naive`: the module off plus `NaiveAuditSubscriber` (one `save()` per change).
 */
/** A fresh Ed25519 key per server process: the bench checks speed, not signatures. */
const BENCH_SIGNING_KEY = generateKeyPairSync('ed25519').privateKey;

export type AuditMode = 'disabled' | 'module' | 'naive';

export const AUDIT_MODES: readonly AuditMode[] = ['disabled', 'module', 'naive'];

export interface BenchAppConfig {
  mode: AuditMode;
  /** PostgreSQL schema holding the tables. */
  schema: string;
  /** `module` only: `false` leaves `integrity` off (bench/http/cpu-split.ts measures what it costs). */
  integrity?: boolean;
  /** `module` with integrity: the integrator's `sequenceEvery` (ms; the module's default without it). */
  sequenceEvery?: number;
}

/**
 * The sample app's orders API (its controller, service, entities and token guard,
 * unchanged) in a root module whose audit set-up is one of the three modes.
 */
@Module({})
export class BenchAppModule {
  static forRoot({ mode, schema, integrity = true, sequenceEvery }: BenchAppConfig): DynamicModule {
    return {
      module: BenchAppModule,
      imports: [
        TypeOrmModule.forRoot({
          ...postgresConnection(schema),
          entities: [Order, OrderNote, ...AuditEntities],
          migrations: AuditMigrations,
          migrationsRun: true,
          synchronize: true,
          subscribers: mode === 'naive' ? [NaiveAuditSubscriber] : [],
        }),
        TypeOrmModule.forFeature([Order, OrderNote]),
        AuditModule.forRoot(
          mode === 'module'
            ? {
                actor: (request) => {
                  const user = request.user as DemoUser | undefined;
                  return user ? { type: 'user', id: user.id, display: user.email } : undefined;
                },
                trustProxy: false,
                // Tamper evidence on: the integrator sequences and signs in the background, as in production.
                ...(integrity ? { integrity: { signingKey: BENCH_SIGNING_KEY, origin: 'bench.nestjs-system-audit/http', ...(sequenceEvery ? { sequenceEvery } : {}) } } : {}),
              }
            : { enabled: false },
        ),
      ],
      controllers: [OrdersController],
      providers: [{ provide: APP_GUARD, useClass: TokenGuard }, OrdersService],
    };
  }
}
