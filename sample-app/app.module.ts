import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditEntities, AuditMigrations, AuditModule, AuditViewerModule } from 'nestjs-system-audit';
import { AdminOrdersController } from './admin/admin-orders.controller.js';
import { AuditTrailController } from './audit-trail/audit-trail.controller.js';
import type { DemoUser } from './auth/demo-users.js';
import { TokenGuard } from './auth/token.guard.js';
import { ViewerGuard } from './auth/viewer.guard.js';
import { VIEWER_PATH } from './auth/viewer-session.js';
import type { DatabaseConfig } from './database.js';
import { OrderExpiryJob, ORDER_EXPIRY_OPTIONS, type OrderExpiryOptions } from './orders/order-expiry.job.js';
import { OrderNote } from './orders/order-note.entity.js';
import { Order } from './orders/order.entity.js';
import { OrdersController } from './orders/orders.controller.js';
import { OrdersService } from './orders/orders.service.js';

export interface AppConfig {
  database: DatabaseConfig;
  expiry: OrderExpiryOptions;
}

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        TypeOrmModule.forRoot({
          ...config.database.connection,
          entities: [Order, OrderNote, ...AuditEntities],
          // The audit table comes from the module's migrations, run at start-up. The
          // sample's own tables are synchronised: fine for a demo, not for production.
          migrations: AuditMigrations,
          migrationsRun: true,
          synchronize: true,
        }),
        TypeOrmModule.forFeature([Order, OrderNote]),
        AuditModule.forRoot({
          // Who did it: the user the token guard signed in (the default reads the same
          // fields; spelled out here to show where to plug in your own user shape).
          actor: (request) => {
            const user = request.user as DemoUser | undefined;
            return user ? { type: 'user', id: user.id, display: user.email } : undefined;
          },
          // Nothing proxies the demo: the IP is the socket's, X-Forwarded-For is ignored.
          trustProxy: false,
        }),
        // The trail in a browser: open /audit?token=alice-token once (admins only).
        AuditViewerModule.register({ path: VIEWER_PATH, guard: ViewerGuard }),
      ],
      controllers: [OrdersController, AdminOrdersController, AuditTrailController],
      providers: [
        { provide: APP_GUARD, useClass: TokenGuard },
        { provide: ORDER_EXPIRY_OPTIONS, useValue: config.expiry },
        OrdersService,
        OrderExpiryJob,
      ],
    };
  }
}
