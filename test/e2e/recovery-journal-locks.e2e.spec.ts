import 'reflect-metadata';
import { Body, Controller, Module, Param, ParseIntPipe, Patch, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { getDataSourceToken, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, Audited, AuditJournalEntity, AuditLogEntity, AuditModule } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { classifyDatabaseError } from '../../lib/storage/database-errors.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { User } from '../app/user.entity.js';
import { latestDeadlock } from '../support/innodb-deadlock.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { QuietLogger } from '../support/two-data-source-instances.js';

/** Requests in flight at once, all the time (each worker sends its next when its last is answered). */
const WORKERS = 48;
/** Transactions each request commits in the main data source (a journal row each). */
const TRANSACTIONS = 4;
/** Requests in all, at most; the load also stops after LOAD_MS. */
const REQUESTS = 1_200;
const LOAD_MS = 20_000;

@Controller('shop')
class ShopController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRepository(User, 'audit') private readonly users: Repository<User>,
  ) {}

  /** Changes an order, in the main data source, in several transactions (a journal row each). */
  @Patch(':id/noted')
  @Audited('order.noted')
  async noted(@Param('id', ParseIntPipe) id: number, @Body() body: { note: string }): Promise<{ id: number }> {
    for (let t = 0; t < TRANSACTIONS; t++) await this.orders.update({ id }, { note: `${body.note}-${t}` });
    return { id };
  }

  /** Changes an order in the main data source (as `noted`) and a user in the audit one (a journal row there too). */
  @Patch(':id/both/:user')
  @Audited('order.handed-over')
  async both(@Param('id', ParseIntPipe) id: number, @Param('user', ParseIntPipe) user: number, @Body() body: { note: string }): Promise<{ id: number }> {
    for (let t = 0; t < TRANSACTIONS; t++) await this.orders.update({ id }, { note: `${body.note}-${t}` });
    await this.users.update({ id: user }, { email: `${body.note}@example.test` });
    return { id };
  }
}

/**
 * Calls `lost` for each statement of `dataSource` that fails as having lost to another
 * transaction (deadlock, lock wait timeout, serialization failure); returns the undo.
 */
function observeLostStatements(dataSource: DataSource, lost: (sql: string, error: Error) => Promise<unknown>): () => void {
  const create = dataSource.createQueryRunner.bind(dataSource);
  dataSource.createQueryRunner = (...args: Parameters<DataSource['createQueryRunner']>) => {
    const runner = create(...args);
    const query = runner.query.bind(runner) as (...params: unknown[]) => Promise<unknown>;
    runner.query = (async (...params: unknown[]) => {
      try {
        return await query(...params);
      } catch (error) {
        if (classifyDatabaseError(error) === 'transient') await lost(String(params[0]), error as Error);
        throw error;
      }
    }) as typeof runner.query;
    return runner;
  };
  return () => {
    delete (dataSource as Partial<Pick<DataSource, 'createQueryRunner'>>).createQueryRunner;
  };
}

/**
 * Units whose journal rows are in another data source than the audit one are stored by
 * deleting those rows in that data source's transaction around the one that stores their
 * events, with a marker per row in the audit data source's journal, deleted after. On
 * MariaDB these DELETEs (`WHERE id IN (…)`) were planned as a scan of the journal whenever
 * it was small next to the unit's rows (a request that commits a few transactions), and at
 * REPEATABLE READ a scan locks every row it reads and the gaps between them: another unit's
 * marker INSERT, which holds the markers it has just inserted, waited for a gap the scan
 * held while the scan waited for one of those markers. InnoDB rolled back one of them: the
 * unit's store (its request answered 500, its events left to the background retry) or the
 * DELETE of markers (left in the journal until recovery took them).
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('units with journal rows in another data source, under concurrent requests, on %s', (kind) => {
  let main: TestDatabase;
  let audit: TestDatabase;
  let app: INestApplication;
  let url: string;
  let mainSource: DataSource;
  let auditSource: DataSource;

  beforeAll(async () => {
    main = await createTestDatabase(kind);
    audit = await createTestDatabase(kind);
    @Module({
      imports: [
        TypeOrmModule.forRoot({ ...main.options, entities: [Order, Customer, AuditJournalEntity], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        TypeOrmModule.forRoot({ ...audit.options, name: 'audit', entities: [...AuditEntities, User], synchronize: true, logging: false } as Parameters<typeof TypeOrmModule.forRoot>[0]),
        TypeOrmModule.forFeature([Order]),
        TypeOrmModule.forFeature([User], 'audit'),
        AuditModule.forRoot({ dataSource: 'audit', recoverAfter: 60_000, shutdownTimeout: 2_000 }),
      ],
      controllers: [ShopController],
    })
    class LocksModule {}
    app = await NestFactory.create(LocksModule, new ExpressAdapter(), { logger: new QuietLogger('Nest', { logLevels: ['error'] }) });
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    mainSource = app.get<DataSource>(getDataSourceToken());
    auditSource = app.get<DataSource>(getDataSourceToken('audit'));
  });
  afterAll(async () => {
    await app?.close();
    await main?.drop();
    await audit?.drop();
  });


  it(`${WORKERS} audited PATCHes in flight at once, changing the main data source (and half of them the audit one too): every request is answered 200, no statement loses to another transaction, each is stored once`, async () => {
    // Every statement of either data source that lost to another transaction (and was, or could have been, tried again).
    const lost: string[] = [];
    const observed = [mainSource, auditSource].map((source) => observeLostStatements(source, async (sql, error) => lost.push(`${sql.slice(0, 120)}: ${error.message}\n${await latestDeadlock([main, audit])}`)));

    const orders = await mainSource.getRepository(Order).save(Array.from({ length: WORKERS }, (_, i) => ({ status: 'new', total: i })));
    const users = await auditSource.getRepository(User).save(Array.from({ length: WORKERS }, (_, i) => ({ email: `u-${i}@example.test` })));
    await app.get(AuditWriter).drain(5_000);
    await app.get(JournalRecovery).runPass();
    await auditSource.getRepository(AuditLogEntity).clear();

    const statuses: number[] = [];
    const sentBy = { noted: 0, both: 0 };
    const deadline = Date.now() + LOAD_MS;
    let sent = 0;
    try {
      await Promise.all(
        orders.map(async (order, worker) => {
          while (sent < REQUESTS && Date.now() < deadline) {
            const i = sent++;
            const both = i % 2 === 1;
            sentBy[both ? 'both' : 'noted']++;
            const response = await fetch(`${url}/shop/${order.id}/${both ? `both/${users[worker]!.id}` : 'noted'}`, {
              method: 'PATCH',
              headers: { 'content-type': 'application/json', 'x-request-id': `locks-${i}` },
              body: JSON.stringify({ note: `n-${i}` }),
            });
            await response.arrayBuffer();
            statuses.push(response.status);
          }
        }),
      );
    } finally {
      for (const restore of observed) restore();
    }

    expect(lost).toEqual([]);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    // Each request stored once, and every journal row gone (the markers too).
    await app.get(AuditWriter).drain(5_000);
    await app.get(JournalRecovery).runPass();
    const logs = auditSource.getRepository(AuditLogEntity);
    expect(await logs.countBy({ action: 'order.noted' })).toBe(sentBy.noted);
    expect(await logs.countBy({ action: 'order.handed-over' })).toBe(sentBy.both);
    expect(await mainSource.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await auditSource.getRepository(AuditJournalEntity).count()).toBe(0);
  }, 90_000);

  /** Makes the next `failures` inserts into `audit_log` fail with the database's own deadlock error (counted by a sequence, which a rollback does not undo). */
  async function deadlockNext(failures: number): Promise<() => Promise<void>> {
    const q = (sql: string) => auditSource.query(sql);
    if (kind === 'postgres') {
      const schema = (audit.options as { schema?: string }).schema!;
      await q(`CREATE SEQUENCE "${schema}".deadlocks_made`);
      await q(`CREATE FUNCTION "${schema}".deadlock_first() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
          IF nextval('"${schema}".deadlocks_made') <= ${failures} THEN
            RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = '40P01';
          END IF;
          RETURN NULL;
        END $f$`);
      await q(`CREATE TRIGGER deadlock_first BEFORE INSERT ON "${schema}".audit_log FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".deadlock_first()`);
      return async () => {
        await q(`DROP TRIGGER deadlock_first ON "${schema}".audit_log`);
        await q(`DROP FUNCTION "${schema}".deadlock_first()`);
        await q(`DROP SEQUENCE "${schema}".deadlocks_made`);
      };
    }
    await q('CREATE SEQUENCE `deadlocks_made`');
    await q(`CREATE TRIGGER deadlock_first BEFORE INSERT ON \`audit_log\` FOR EACH ROW
      BEGIN
        IF NEXTVAL(\`deadlocks_made\`) <= ${failures} THEN
          SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found when trying to get lock (made by the test)';
        END IF;
      END`);
    return async () => {
      await q('DROP TRIGGER deadlock_first');
      await q('DROP SEQUENCE `deadlocks_made`');
    };
  }

  it('a unit whose store loses to another transaction three times in a row is stored, once, and its request answered 200', async () => {
    const order = await mainSource.getRepository(Order).save({ status: 'new', total: 1 });
    await app.get(JournalRecovery).runPass();
    await auditSource.getRepository(AuditLogEntity).clear();
    const undo = await deadlockNext(3);
    try {
      const response = await fetch(`${url}/shop/${order.id}/noted`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note: 'retried' }) });
      expect(response.status).toBe(200);
    } finally {
      await undo();
    }
    expect(await auditSource.getRepository(AuditLogEntity).countBy({ action: 'order.noted' })).toBe(1);
    expect(await mainSource.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await auditSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it.runIf(kind === 'mariadb')('journal tables without the unit id index: units are stored once, their rows and markers deleted', async () => {
    const order = await mainSource.getRepository(Order).save({ status: 'new', total: 1 });
    const user = await auditSource.getRepository(User).save({ email: 'without-index@example.test' });
    await app.get(JournalRecovery).runPass();
    await auditSource.getRepository(AuditLogEntity).clear();
    for (const source of [mainSource, auditSource]) await source.query('DROP INDEX `idx_audit_journal_unit` ON `audit_journal`');
    for (const note of ['first', 'second']) {
      const response = await fetch(`${url}/shop/${order.id}/both/${user.id}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ note }) });
      expect(response.status).toBe(200);
    }
    expect(await auditSource.getRepository(AuditLogEntity).countBy({ action: 'order.handed-over' })).toBe(2);
    expect(await mainSource.getRepository(AuditJournalEntity).count()).toBe(0);
    expect(await auditSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
