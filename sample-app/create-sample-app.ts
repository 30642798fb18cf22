import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import type { INestApplication, NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { databaseConfig, type DatabaseConfig } from './database.js';

export interface SampleAppOptions {
  /** A `postgres://`, `mysql://` or `mariadb://` URL, or a SQLite file path (`:memory:` for a throwaway one). */
  database: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Interface to listen on. @default all interfaces */
  host?: string;
  /** How often the order expiry job runs, in seconds; 0 turns the schedule off. @default 60 */
  expiryIntervalSeconds?: number;
  /** How long an order may stay unpaid, in seconds. @default 1800 */
  orderTtlSeconds?: number;
  /** Nest's logger setting. @default Nest's default logger */
  logger?: NestApplicationOptions['logger'];
}

export interface SampleApp {
  app: INestApplication;
  /** Base URL, e.g. `http://localhost:3000`. */
  url: string;
  database: DatabaseConfig;
}

/** Creates the database schema if needed, boots the orders service and starts listening. */
export async function createSampleApp(options: SampleAppOptions): Promise<SampleApp> {
  const database = databaseConfig(options.database);
  await database.prepare();
  const app = await NestFactory.create(
    AppModule.forRoot({
      database,
      expiry: { intervalSeconds: options.expiryIntervalSeconds ?? 60, ttlSeconds: options.orderTtlSeconds ?? 1800 },
    }),
    options.logger === undefined ? {} : { logger: options.logger },
  );
  if (options.host === undefined) await app.listen(options.port);
  else await app.listen(options.port, options.host);
  const { port } = app.getHttpServer().address() as AddressInfo;
  const host = options.host === undefined || options.host === '0.0.0.0' || options.host === '::' ? 'localhost' : options.host;
  return { app, url: `http://${host}:${port}`, database };
}
