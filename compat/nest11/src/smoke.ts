// Smoke test of the published package in a CommonJS NestJS 11 + TypeORM 0.3 app.
//
// `nestjs-system-audit` is installed from the tarball that `npm pack` makes at the
// repository root, so it is resolved exactly as in a user's project: through the
// package's `exports` (`require` condition → dist/cjs), with its peer dependencies
// (@nestjs/*, typeorm, rxjs, reflect-metadata) taken from this project's node_modules.
//
// Each scenario boots a tiny app on port 0, sends one PATCH request with fetch and
// reads `audit_log` back through the AuditLogEntity repository, then opens the viewer's
// search page and stylesheet (which the build must carry).
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { Body, Controller, Module, Param, Patch, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { getDataSourceToken, TypeOrmModule, type TypeOrmModuleOptions } from '@nestjs/typeorm';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { Audited, AuditLogEntity, AuditMigrations, AuditModule, AuditViewerModule } from 'nestjs-system-audit';

type DatabaseKind = 'sqlite' | 'postgres';
type SchemaMode = 'synchronize' | 'migrations';
type AdapterKind = 'express' | 'fastify';

interface Scenario {
  db: DatabaseKind;
  schema: SchemaMode;
  adapter: AdapterKind;
}

const POSTGRES = {
  host: process.env['PGHOST'] ?? '127.0.0.1',
  port: Number(process.env['PGPORT'] ?? 5432),
  user: process.env['PGUSER'] ?? 'postgres',
  password: process.env['PGPASSWORD'] ?? '',
  database: process.env['PGDATABASE'] ?? 'test',
};

class SmokeFailure extends Error {}

@Controller('orders')
class OrdersController {
  @Patch(':id')
  @Audited('order.updated')
  update(@Param('id') id: string, @Body() body: { status?: string }): { id: string; status: string | undefined } {
    return { id, status: body?.status };
  }
}

/** The package and its peers must come from this project, not from the repository. */
function checkResolution(): void {
  const entry = require.resolve('nestjs-system-audit');
  const expected = `${sep}compat${sep}nest11${sep}node_modules${sep}nestjs-system-audit${sep}dist${sep}cjs${sep}index.js`;
  if (!entry.endsWith(expected)) {
    throw new SmokeFailure(`nestjs-system-audit resolved to ${entry}; expected the installed tarball's CommonJS build (…${expected})`);
  }
  for (const peer of ['@nestjs/common', '@nestjs/core', '@nestjs/typeorm', 'typeorm', 'rxjs', 'reflect-metadata']) {
    const fromPackage = require.resolve(peer, { paths: [dirname(entry)] });
    const fromApp = require.resolve(peer);
    if (fromPackage !== fromApp) {
      throw new SmokeFailure(`peer ${peer} resolves to ${fromPackage} from the package but to ${fromApp} from the app`);
    }
  }
  // Read from disk: typeorm 0.3's `exports` map does not expose `./package.json`.
  const version = (name: string): string =>
    (JSON.parse(readFileSync(join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  console.log(
    `resolved nestjs-system-audit ${version('nestjs-system-audit')} (dist/cjs) with @nestjs/core ${version('@nestjs/core')}, ` +
      `@nestjs/typeorm ${version('@nestjs/typeorm')}, typeorm ${version('typeorm')}`,
  );
}

async function postgresReachable(): Promise<string | undefined> {
  const client = new Client({ ...POSTGRES, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    return undefined;
  } catch (error) {
    return (error as Error).message || String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function withPgAdmin(sql: string): Promise<void> {
  const client = new Client(POSTGRES);
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function typeOrmOptions(scenario: Scenario, schemaName: string): TypeOrmModuleOptions {
  const schema =
    scenario.schema === 'synchronize'
      ? { synchronize: true }
      : { synchronize: false, migrations: AuditMigrations, migrationsRun: true };
  if (scenario.db === 'sqlite') {
    return { type: 'better-sqlite3', database: ':memory:', autoLoadEntities: true, ...schema };
  }
  return {
    type: 'postgres',
    host: POSTGRES.host,
    port: POSTGRES.port,
    username: POSTGRES.user,
    password: POSTGRES.password,
    database: POSTGRES.database,
    schema: schemaName,
    autoLoadEntities: true,
    ...schema,
  };
}

async function runScenario(scenario: Scenario): Promise<void> {
  const schemaName = `audit_smoke_${randomBytes(5).toString('hex')}`;
  if (scenario.db === 'postgres') await withPgAdmin(`CREATE SCHEMA "${schemaName}"`);

  @Module({
    imports: [
      TypeOrmModule.forRoot(typeOrmOptions(scenario, schemaName)),
      AuditModule.forRoot(),
      AuditViewerModule.register({ path: '/audit', guard: { canActivate: () => true } }),
    ],
    controllers: [OrdersController],
  })
  class AppModule {}

  let app: INestApplication | undefined;
  try {
    const adapter = scenario.adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter();
    app = await NestFactory.create(AppModule, adapter, { logger: ['error', 'warn'] });
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');

    const response = await fetch(`${url}/orders/42`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'paid' }),
    });
    const requestId = response.headers.get('x-request-id');
    const problems: string[] = [];
    if (response.status !== 200) problems.push(`HTTP status ${response.status} (expected 200): ${await response.text()}`);
    if (!requestId) problems.push('the response has no x-request-id header');

    const dataSource = app.get<DataSource>(getDataSourceToken());
    if (scenario.schema === 'migrations') {
      const pending = await dataSource.showMigrations();
      if (pending) problems.push('AuditMigrations still pending after migrationsRun');
    }
    const rows = await dataSource.getRepository(AuditLogEntity).find();
    if (rows.length !== 1) {
      problems.push(`audit_log has ${rows.length} rows (expected 1): ${JSON.stringify(rows)}`);
    } else {
      const row = rows[0]!;
      const expected: Partial<Record<keyof AuditLogEntity, unknown>> = {
        action: 'order.updated',
        kind: 'intent',
        outcome: 'success',
        source: 'http',
        method: 'PATCH',
        route: '/orders/:id',
        path: '/orders/42',
        requestId,
      };
      for (const [key, value] of Object.entries(expected)) {
        const actual = row[key as keyof AuditLogEntity];
        if (actual !== value) problems.push(`audit_log.${key} is ${JSON.stringify(actual)} (expected ${JSON.stringify(value)})`);
      }
      if (!(row.occurredAt instanceof Date) || Number.isNaN(row.occurredAt.getTime())) {
        problems.push(`audit_log.occurredAt is ${String(row.occurredAt)} (expected a valid Date)`);
      }
    }
    for (const [path, type, expected] of [
      ['/audit', 'text/html; charset=utf-8', 'order.updated'],
      ['/audit/viewer.css', 'text/css; charset=utf-8', '@media (max-width: 600px)'],
    ] as const) {
      const page = await fetch(`${url}${path}`);
      const body = await page.text();
      if (page.status !== 200) problems.push(`GET ${path}: HTTP status ${page.status} (expected 200): ${body.slice(0, 300)}`);
      if (page.headers.get('content-type') !== type) problems.push(`GET ${path}: content-type ${page.headers.get('content-type')} (expected ${type})`);
      if (!page.headers.get('content-security-policy')?.startsWith("default-src 'none'")) problems.push(`GET ${path}: no strict Content-Security-Policy`);
      if (!body.includes(expected)) problems.push(`GET ${path}: the answer does not contain ${JSON.stringify(expected)}`);
    }
    if (problems.length) throw new SmokeFailure(problems.map((p) => `    - ${p}`).join('\n'));
  } finally {
    await app?.close();
    if (scenario.db === 'postgres') await withPgAdmin(`DROP SCHEMA IF EXISTS "${schemaName}" CASCADE`);
  }
}

async function main(): Promise<void> {
  checkResolution();

  const scenarios: Scenario[] = [
    { db: 'sqlite', schema: 'synchronize', adapter: 'express' },
    { db: 'sqlite', schema: 'migrations', adapter: 'express' },
    { db: 'sqlite', schema: 'synchronize', adapter: 'fastify' },
  ];
  const pgError = await postgresReachable();
  if (pgError === undefined) {
    scenarios.push(
      { db: 'postgres', schema: 'synchronize', adapter: 'express' },
      { db: 'postgres', schema: 'migrations', adapter: 'express' },
    );
  } else if (process.env['CI'] === 'true') {
    throw new SmokeFailure(`CI=true and PostgreSQL is mandatory, but it is unreachable: ${pgError}`);
  } else {
    console.warn(`!! SKIPPING the PostgreSQL scenarios (set CI=true to make them mandatory): ${pgError}`);
  }

  let failed = 0;
  for (const scenario of scenarios) {
    const label = `${scenario.db} + ${scenario.schema} over ${scenario.adapter}`;
    try {
      await runScenario(scenario);
      console.log(`  ok    ${label}`);
    } catch (error) {
      failed++;
      const detail = error instanceof SmokeFailure ? error.message : (error as Error).stack ?? String(error);
      console.error(`  FAIL  ${label}\n${detail}`);
    }
  }
  if (failed) throw new SmokeFailure(`${failed} of ${scenarios.length} scenarios failed`);
  console.log(`all ${scenarios.length} scenarios passed`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`nest11 smoke FAILED: ${error instanceof SmokeFailure ? error.message : (error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
