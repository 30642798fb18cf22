// Hostile tests of the append-only guards: UPDATE and DELETE patterns that slip past
// the triggers on a sequenced event, with no trigger dropped (what an application bug or
// an injected statement can do with the application's own privileges).
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditCheckpointEntity, AuditEntities, AuditLogEntity, AuditMigrations } from '../../lib/index.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const REFUSED = (table: string) => new RegExp(`${table} is append-only`);

describe.each(databases())('append-only guards against an application statement on %s', (kind) => {
  let db: TestDatabase;
  let dataSource: DataSource;
  let log: string;
  let checkpoint: string;
  const q = (name: string) => dataSource.driver.escape(name);

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    dataSource = new DataSource({ ...db.options, entities: [...AuditEntities], migrations: AuditMigrations } as never);
    await dataSource.initialize();
    await dataSource.runMigrations();
    log = escapedTable(dataSource, dataSource.getMetadata(AuditLogEntity));
    checkpoint = escapedTable(dataSource, dataSource.getMetadata(AuditCheckpointEntity));
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  /** A sequenced event, as the integrator leaves it. */
  async function sequencedEvent(seq: number): Promise<string> {
    const id = randomUUID();
    await dataSource.getRepository(AuditLogEntity).insert({
      id,
      occurredAt: new Date('2025-12-01T10:00:00.123Z'),
      action: 'order.paid',
      outcome: 'success',
      kind: 'intent',
      actorType: 'user',
      actorId: 'Alice',
      source: 'http',
      reason: 'approved by Alice',
      context: { note: 'x' },
      seq: null,
    });
    await dataSource.query(`UPDATE ${log} SET ${q('seq')} = ${seq} WHERE ${q('id')} = '${id}'`);
    return id;
  }

  it('refuses an UPDATE that changes only the letter case (or trailing spaces) of a column of a sequenced event', async () => {
    const id = await sequencedEvent(1);
    await expect(dataSource.query(`UPDATE ${log} SET ${q('actor_id')} = 'ALICE' WHERE ${q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    await expect(dataSource.query(`UPDATE ${log} SET ${q('reason')} = 'approved by Alice   ' WHERE ${q('id')} = '${id}'`)).rejects.toThrow(REFUSED('audit_log'));
    expect(await dataSource.getRepository(AuditLogEntity).findOneBy({ id })).toMatchObject({ actorId: 'Alice', reason: 'approved by Alice' });
  });

  it('refuses a sequenced event replaced by an INSERT that overwrites its primary key', async () => {
    const id = await sequencedEvent(2);
    if (kind === 'sqlite') {
      // REPLACE deletes the old row; SQLite fires DELETE triggers for it only with recursive_triggers on.
      // An insert over an existing event is dropped (so that the writer's retried INSERT … ON
      // CONFLICT DO NOTHING stays a no-op): the event stays as it was (checked below).
      await dataSource.query(
        `INSERT OR REPLACE INTO ${log} (id, occurred_at, action, outcome, kind, actor_type, actor_id, source, seq) ` +
          `VALUES ('${id}', '2025-12-01 10:00:00.123', 'order.refunded', 'success', 'intent', 'user', 'Mallory', 'http', 2)`,
      );
      // A new event given a seq already taken is refused.
      await expect(
        dataSource.query(
          `INSERT OR REPLACE INTO ${log} (id, occurred_at, action, outcome, kind, actor_type, actor_id, source, seq) ` +
            `VALUES ('${randomUUID()}', '2025-12-01 10:00:00.123', 'order.refunded', 'success', 'intent', 'user', 'Mallory', 'http', 2)`,
        ),
      ).rejects.toThrow(REFUSED('audit_log'));
      // The same with a stored checkpoint.
      await dataSource.query(`INSERT INTO ${checkpoint} (tree_size, root_hash, note, created_at) VALUES (1, '${'b'.repeat(64)}', 'signed', '2025-12-01 10:00:00.000')`);
      await expect(dataSource.query(`REPLACE INTO ${checkpoint} (tree_size, root_hash, note, created_at) VALUES (1, '${'c'.repeat(64)}', 'forged', '2025-12-01 10:00:00.000')`)).rejects.toThrow(
        REFUSED('audit_checkpoint'),
      );
    } else if (kind === 'mariadb') {
      await expect(
        dataSource.query(
          `REPLACE INTO ${log} (id, occurred_at, action, outcome, kind, actor_type, actor_id, source, seq) ` +
            `VALUES ('${id}', '2025-12-01 10:00:00.123', 'order.refunded', 'success', 'intent', 'user', 'Mallory', 'http', 2)`,
        ),
      ).rejects.toThrow(REFUSED('audit_log'));
    } else {
      await expect(
        dataSource.query(
          `INSERT INTO ${log} (id, occurred_at, action, outcome, kind, actor_type, actor_id, source, seq) ` +
            `VALUES ('${id}', '2025-12-01 10:00:00.123', 'order.refunded', 'success', 'intent', 'user', 'Mallory', 'http', 2) ON CONFLICT (id) DO UPDATE SET actor_id = EXCLUDED.actor_id`,
        ),
      ).rejects.toThrow(REFUSED('audit_log'));
    }
    expect(await dataSource.getRepository(AuditLogEntity).findOneBy({ id })).toMatchObject({ action: 'order.paid', actorId: 'Alice', seq: 2 });
  });

  it.runIf(kind === 'sqlite')('refuses an UPDATE OR REPLACE that sets a seq already taken (which deletes the sequenced event holding it)', async () => {
    const id = await sequencedEvent(3);
    const other = randomUUID();
    await dataSource.getRepository(AuditLogEntity).insert({ id: other, occurredAt: new Date(), action: 'order.paid', outcome: 'success', kind: 'intent', actorType: 'user', source: 'http', seq: null });
    // Setting a NULL seq passes the UPDATE guard; the conflict on the unique seq deletes the other row without its DELETE guard.
    await expect(dataSource.query(`UPDATE OR REPLACE ${log} SET ${q('seq')} = 3 WHERE ${q('id')} = '${other}'`)).rejects.toThrow(REFUSED('audit_log'));
    expect(await dataSource.getRepository(AuditLogEntity).findOneBy({ id })).toMatchObject({ seq: 3 });
  });
});
