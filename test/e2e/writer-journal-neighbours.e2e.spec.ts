// The writer deletes its units' journal rows without touching other units': rows of other units, locked by another transaction, do not make it wait, however few they are beside the batch's.
import { randomUUID } from 'node:crypto';
import { DataSource, In, type DataSourceOptions, type QueryRunner } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditJournalEntity, AuditLogEntity, AuditMigrations } from '../../lib/index.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { within } from '../support/within.js';
import { writerEvent as event } from '../support/writer-events.js';

/** How long the write may take; a lock wait lasts until InnoDB's timeout (50 s by default). */
const WITHIN_MS = 5_000;
/** Units of the batch, and of other batches in flight: the batch's are most of the journal's rows. */
const UNITS = 24;
const NEIGHBOURS = 4;

async function addJournal(dataSource: DataSource, unitId: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  await dataSource.getRepository(AuditJournalEntity).insert(
    ids.map((id) => ({ id, unitId, instanceId: randomUUID(), createdAt: new Date(), entry: { changes: [] } as never })),
  );
  return ids;
}

/**
 * Under concurrent requests, two writer batches in flight on MariaDB were rolled back as a
 * deadlock, each waiting for a journal row of the other's units. The journal holds the rows
 * of the units in flight, so a batch's units are most of its rows; then the optimizer read
 * `unit_id IN (…)` (the locking read, and the DELETE) as a scan of the whole table, index
 * hint or not, and a scan locks every row it reads: the other batch's rows too.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('writer journal DELETE beside a locked neighbour on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  let holder: QueryRunner | undefined;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await new DataSource({ ...db.options, entities: [...AuditEntities], migrations: [...AuditMigrations], migrationsRun: true } as DataSourceOptions).initialize();
  });
  afterAll(async () => {
    await holder?.release();
    await dataSource?.destroy();
    await db?.drop();
  });

  /** Locks (FOR UPDATE, one row at a time by its key, in a transaction left open) the journal rows of NEIGHBOURS other units. */
  async function lockNeighbours(): Promise<{ ids: string[]; release: () => Promise<void> }> {
    const units = Array.from({ length: NEIGHBOURS }, () => randomUUID());
    const ids = (await Promise.all(units.map((unit) => addJournal(dataSource, unit, 1)))).flat();
    holder = dataSource.createQueryRunner();
    await holder.connect();
    await holder.startTransaction('READ COMMITTED');
    for (const id of ids) await holder.manager.getRepository(AuditJournalEntity).findOne({ where: { id }, lock: { mode: 'pessimistic_write' } });
    return {
      ids,
      release: async () => {
        await holder!.rollbackTransaction();
        await holder!.release();
        holder = undefined;
        await dataSource.getRepository(AuditJournalEntity).delete({ id: In(ids) });
      },
    };
  }

  it.each([
    ['guarded (the journal rows the units wrote named)', true],
    ['unguarded (the unit ids only)', false],
  ])(`a batch of ${UNITS} units stored %s beside ${NEIGHBOURS} units whose rows another transaction holds: done at once, its rows deleted, theirs left`, async (_label, guarded) => {
    const units = Array.from({ length: UNITS }, () => randomUUID());
    const ids = (await Promise.all(units.map((unit) => addJournal(dataSource, unit, 1)))).flat();
    const neighbours = await lockNeighbours();
    const action = `neighbours.${guarded ? 'guarded' : 'unguarded'}`;
    const writer = new AuditWriter(dataSource, resolveAuditOptions({}));
    let write: Promise<void> | undefined;
    try {
      write = writer.write([event(action)], { journalUnits: units, ...(guarded ? { journalRows: ids } : {}) });
      expect(await within(write.then(() => 'stored'), WITHIN_MS)).toBe('stored');
      expect(await dataSource.getRepository(AuditJournalEntity).countBy({ id: In(neighbours.ids) })).toBe(NEIGHBOURS);
    } finally {
      await neighbours.release();
      await write?.catch(() => undefined);
    }
    expect(await dataSource.getRepository(AuditLogEntity).countBy({ action })).toBe(1);
    expect(await dataSource.getRepository(AuditJournalEntity).countBy({ unitId: In(units) })).toBe(0);
  }, 90_000);
});
