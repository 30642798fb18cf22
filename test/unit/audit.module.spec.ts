import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AuditEntities,
  AuditJournalEntity,
  AuditLogEntity,
  AuditMigrations,
  AuditModule,
  AuditService,
  InvalidAuditOptionsError,
  type AuditModuleOptions,
  type AuditModuleOptions as Options,
} from '../../lib/index.js';

const sqlite = () =>
  TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', autoLoadEntities: true, synchronize: true });

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function boot(auditModule: ReturnType<typeof AuditModule.forRoot>, extraImports: unknown[] = []) {
  const moduleRef = await Test.createTestingModule({ imports: [sqlite(), auditModule, ...(extraImports as never[])] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  closers.push(() => app.close());
  return app;
}

/** Proves the module is wired: a manual event round-trips through the audit table. */
async function expectWorking(app: Awaited<ReturnType<typeof boot>>, expectedActorType = 'system'): Promise<void> {
  const audit = app.get(AuditService);
  const id = await audit.log({ action: 'module.checked' });
  const rows = await app.get(DataSource).getRepository(AuditLogEntity).find();
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ id, action: 'module.checked', actorType: expectedActorType });
}

@Injectable()
class AuditConfig {
  createAuditOptions(): AuditModuleOptions {
    return { trustProxy: 'loopback', redact: ['ssn'] };
  }
}

@Module({ providers: [AuditConfig], exports: [AuditConfig] })
class ConfigModule {}

describe('AuditModule', () => {
  it('forRoot() with no options registers the service, the entity (autoLoadEntities) and the interceptor', async () => {
    await expectWorking(await boot(AuditModule.forRoot()));
  });

  it('forRoot(options)', async () => {
    await expectWorking(await boot(AuditModule.forRoot({ failOpen: true, redact: ['dob'] })));
  });

  it('forRootAsync with useFactory and inject', async () => {
    await expectWorking(
      await boot(
        AuditModule.forRootAsync({
          imports: [ConfigModule],
          inject: [AuditConfig],
          useFactory: (config: AuditConfig) => config.createAuditOptions(),
        }),
      ),
    );
  });

  it('forRootAsync with useClass', async () => {
    await expectWorking(await boot(AuditModule.forRootAsync({ useClass: AuditConfig })));
  });

  it('forRootAsync with useExisting', async () => {
    await expectWorking(await boot(AuditModule.forRootAsync({ imports: [ConfigModule], useExisting: AuditConfig })));
  });

  it('forRootAsync with a named data source', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ name: 'audit', type: 'better-sqlite3', database: ':memory:', autoLoadEntities: true, synchronize: true }),
        AuditModule.forRootAsync({ dataSource: 'audit', useFactory: () => ({}) }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    closers.push(() => app.close());
    await app.get(AuditService).log({ action: 'module.checked' });
    const dataSource = app.get<DataSource>('auditDataSource');
    expect(await dataSource.getRepository(AuditLogEntity).count()).toBe(1);
  });

  it('stops start-up with a clear message when the data source does not know AuditLogEntity', async () => {
    const error = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [] }), AuditModule.forRoot()],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        closers.push(() => app.close());
        await app.init();
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(
      /AuditLogEntity, AuditSubjectEntity, AuditJournalEntity, AuditInstanceEntity, AuditTreeEntity, AuditCheckpointEntity are not entities of the audit module's TypeORM data source "default": add `...AuditEntities`/,
    );
  });

  it('names the entities missing when the data source lists only some of them', async () => {
    const error = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [AuditLogEntity] }), AuditModule.forRoot()],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        closers.push(() => app.close());
        await app.init();
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(
      /^AuditSubjectEntity, AuditJournalEntity, AuditInstanceEntity, AuditTreeEntity, AuditCheckpointEntity are not entities of the audit module's TypeORM data source/,
    );
  });

  it('names the missing entities by their tables too', async () => {
    const error = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [AuditLogEntity, AuditJournalEntity] }), AuditModule.forRoot()],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        closers.push(() => app.close());
        await app.init();
      })
      .catch((e: unknown) => e);
    const message = (error as Error).message;
    for (const table of ['audit_subject', 'audit_instance', 'audit_tree', 'audit_checkpoint']) expect(message).toContain(table);
    expect(message).not.toMatch(/\baudit_journal\b|\baudit_log\b/);
  });

  it('stops start-up with a clear message when the audit tables do not exist', async () => {
    const error = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'better-sqlite3', database: ':memory:', entities: [...AuditEntities] }), AuditModule.forRoot()],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        closers.push(() => app.close());
        await app.init();
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/The audit tables are not usable \(.*\): run AuditMigrations \(or synchronize\)/);
  });

  it('stops start-up naming audit_subject when only the migrations before it were run', async () => {
    const error = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          type: 'better-sqlite3',
          database: ':memory:',
          entities: [...AuditEntities],
          migrations: AuditMigrations.slice(0, 2),
          migrationsRun: true,
        }),
        AuditModule.forRoot(),
      ],
    })
      .compile()
      .then(async (moduleRef) => {
        const app = moduleRef.createNestApplication({ logger: false });
        closers.push(() => app.close());
        await app.init();
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/The audit tables are not usable \(.*audit_subject.*\): run AuditMigrations \(or synchronize\)/);
  });

  const invalid: Array<[string, Options, RegExp]> = [
    ['trustProxy', { trustProxy: 'not-an-ip' }, /Invalid AuditModule option "trustProxy": "not-an-ip" is not an IP address/],
    ['trustProxy', { trustProxy: -1 }, /"trustProxy": a hop count must be a whole number/],
    ['actor', { actor: 'user' as never }, /Invalid AuditModule option "actor": must be a function/],
    ['redact', { redact: 'password' as never }, /"redact": must be an array of field names/],
    ['failOpen', { failOpen: 'yes' as never }, /"failOpen": must be true or false/],
    ['maxHeaderLength', { maxHeaderLength: 0 }, /"maxHeaderLength": must be a whole number from 1/],
    ['recordPath', { recordPath: 'no' as never }, /"recordPath": must be true or false, got "no"/],
    ['secretPathParams', { secretPathParams: 'token' as never }, /"secretPathParams": must be an array of parameter names or name fragments, got "token"/],
    ['secretPathParams', { secretPathParams: ['token', ''] }, /"secretPathParams": must be an array of parameter names/],
    ['trustProxies', { trustProxies: true } as never, /"trustProxies": is not an option of AuditModule/],
    ['captureDataSources', { captureDataSources: 'default' as never }, /"captureDataSources": must be a non-empty array of data source names or DataSource instances/],
    ['captureDataSources', { captureDataSources: [42 as never] }, /"captureDataSources": 42 is neither a data source name nor a DataSource/],
    ['captureDataSources', { captureDataSources: ['billing'] }, /"captureDataSources": no TypeORM data source named "billing" \(known: "default"\)/],
  ];

  it.each(invalid)('stops start-up on a bad "%s" with a message naming it (forRoot)', async (option, options, message) => {
    const error = await boot(AuditModule.forRoot(options)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect((error as InvalidAuditOptionsError).option).toBe(option);
    expect((error as Error).message).toMatch(message);
  });

  it('stops start-up on a bad option from forRootAsync too', async () => {
    const error = await boot(AuditModule.forRootAsync({ useFactory: () => ({ trustProxy: '10.0.0.0/99' }) })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidAuditOptionsError);
    expect((error as Error).message).toMatch(/"trustProxy": "10.0.0.0\/99" has an invalid prefix length/);
  });
});
