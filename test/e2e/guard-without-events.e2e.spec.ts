// The writer's journal guard: a unit recovered elsewhere keeps the journal rows it wrote since, also a unit without events of its own, alone in its batch, beside others, over several statements, and in a caller's transaction.
import { randomUUID } from 'node:crypto';
import { DataSource, In, type DataSourceOptions, type EntityManager } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEntities, AuditJournalEntity, AuditLogEntity, AuditMigrations } from '../../lib/index.js';
import { AuditUnitRecoveredError } from '../../lib/exceptions/audit-unit-recovered.error.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { writerEvent as event } from '../support/writer-events.js';

class SmallStatements extends AuditWriter {
  constructor(dataSource: DataSource, private readonly limit: number) {
    super(dataSource, resolveAuditOptions({}));
  }
  protected override statementByteLimit(): Promise<number> {
    return Promise.resolve(this.limit);
  }
}

async function addJournal(dataSource: DataSource, unitId: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  await dataSource.getRepository(AuditJournalEntity).insert(
    ids.map((id) => ({ id, unitId, instanceId: randomUUID(), createdAt: new Date(), entry: { changes: [] } as never })),
  );
  return ids;
}
const journalLeft = (dataSource: DataSource, unitIds: string[]): Promise<number> =>
  dataSource.getRepository(AuditJournalEntity).count({ where: { unitId: In(unitIds) } });
const stored = (dataSource: DataSource, action: string): Promise<number> => dataSource.getRepository(AuditLogEntity).count({ where: { action } });
/** A unit whose first journal row was recovered (deleted) elsewhere, and which wrote one more row since. */
async function recoveredThenMore(dataSource: DataSource): Promise<{ unit: string; ids: string[] }> {
  const unit = randomUUID();
  const ids = await addJournal(dataSource, unit, 2);
  await dataSource.getRepository(AuditJournalEntity).delete({ id: ids[0]! });
  return { unit, ids };
}

describe.each(databases())('writer journal guard on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = await new DataSource({ ...db.options, entities: [...AuditEntities], migrations: [...AuditMigrations], migrationsRun: true } as DataSourceOptions).initialize();
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  // A unit whose changes netted out (no events: e.g. total 1 -> 77 recovered elsewhere, then 77 -> 1 after
  // resuming): its later row holds the change back to 1, which the recovered record does not have.
  it('a unit with no events, recovered elsewhere, keeps the row it wrote since (alone in its batch)', async () => {
    const { unit, ids } = await recoveredThenMore(dataSource);
    const writer = new AuditWriter(dataSource, resolveAuditOptions({}));
    const result = await writer.write([], { journalUnits: [unit], journalRows: ids }).then(
      () => 'resolved',
      (error: unknown) => (error instanceof AuditUnitRecoveredError ? 'recovered' : String(error)),
    );
    expect({ result, left: await journalLeft(dataSource, [unit]) }).toEqual({ result: 'recovered', left: 1 });
  });

  it('a unit with no events, recovered elsewhere, keeps the row it wrote since (with a manager)', async () => {
    const { unit, ids } = await recoveredThenMore(dataSource);
    const writer = new AuditWriter(dataSource, resolveAuditOptions({}));
    const result = await dataSource
      .transaction((manager: EntityManager) => writer.write([], { manager, journalUnits: [unit], journalRows: ids }))
      .then(
        () => 'resolved',
        (error: unknown) => (error instanceof AuditUnitRecoveredError ? 'recovered' : String(error)),
      );
    expect({ result, left: await journalLeft(dataSource, [unit]) }).toEqual({ result: 'recovered', left: 1 });
  });

  it.each([undefined, 2_000])('a batch with one recovered unit: the others stored, its rows kept (byte limit %s)', async (limit) => {
    const writer = limit ? new SmallStatements(dataSource, limit) : new AuditWriter(dataSource, resolveAuditOptions({}));
    const { unit, ids } = await recoveredThenMore(dataSource);
    const others = Array.from({ length: 5 }, () => randomUUID());
    const otherIds = await Promise.all(others.map((u) => addJournal(dataSource, u, 2)));
    const action = `guard.batch.${limit ?? 'one'}`;
    const results = await Promise.allSettled([
      writer.write([event(action), event(action)], { journalUnits: [unit], journalRows: ids }),
      ...others.map((u, i) => writer.write([event(action), event(action)], { journalUnits: [u], journalRows: otherIds[i]! })),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : r.reason instanceof AuditUnitRecoveredError ? 'recovered' : String(r.reason)))).toEqual([
      'recovered',
      ...others.map(() => 'ok'),
    ]);
    expect(await stored(dataSource, action)).toBe(10);
    expect(await journalLeft(dataSource, [unit])).toBe(1);
    expect(await journalLeft(dataSource, others)).toBe(0);
  });
});
