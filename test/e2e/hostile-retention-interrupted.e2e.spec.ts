// A purge that stops half way (a batch fails after the signed record is stored): the
// trail still verifies, the purge reports the failure, and the next purge finishes it.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('an interrupted purge on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  /** A trigger of the test's own that fails the DELETE of the event at `seq`. */
  async function failDeleteOf(app: TestApp, seq: number): Promise<() => Promise<void>> {
    const table = app.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map((name) => app.dataSource.driver.escape(name)).join('.');
    if (kind === 'postgres') {
      const schema = (db!.options as { schema: string }).schema;
      await app.dataSource.query(
        `CREATE FUNCTION "${schema}".test_fail_delete() RETURNS trigger AS $$ BEGIN IF OLD.seq = ${seq} THEN RAISE EXCEPTION 'test: delete refused'; END IF; RETURN OLD; END $$ LANGUAGE plpgsql`,
      );
      await app.dataSource.query(`CREATE TRIGGER test_fail_delete BEFORE DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION "${schema}".test_fail_delete()`);
      return async () => {
        await app.dataSource.query(`DROP TRIGGER test_fail_delete ON ${table}`);
      };
    }
    if (kind === 'mariadb') {
      await app.dataSource.query(
        `CREATE TRIGGER test_fail_delete BEFORE DELETE ON ${table} FOR EACH ROW BEGIN IF OLD.seq = ${seq} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'test: delete refused'; END IF; END`,
      );
      return async () => {
        await app.dataSource.query('DROP TRIGGER test_fail_delete');
      };
    }
    await app.dataSource.query(`CREATE TRIGGER test_fail_delete BEFORE DELETE ON ${table} WHEN OLD.seq = ${seq} BEGIN SELECT RAISE(ABORT, 'test: delete refused'); END`);
    return async () => {
      await app.dataSource.query('DROP TRIGGER test_fail_delete');
    };
  }

  it('verifies while half done, and the next purge removes the rest without a second record', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    for (let i = 0; i < 10; i++) await t.audit.log({ action: 'order.noted', reason: `old ${i + 1}` });
    await sleep(15);
    const before = new Date();
    await sleep(15);
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'order.noted', reason: `new ${i + 1}` });
    const repository = t.dataSource.getRepository(AuditLogEntity);

    const restore = await failDeleteOf(t, 7);
    await expect(t.audit.purge({ before, batchSize: 3 })).rejects.toThrow(/test: delete refused/);
    // Batches 1-3 and 4-6 went; 7 to 10 stay, under the stored record.
    expect((await repository.find({ order: { seq: 'ASC' } })).filter((row) => row.action === 'order.noted').map((row) => row.seq)).toEqual([7, 8, 9, 10, 11, 12, 13]);
    expect(await repository.countBy({ action: 'audit.purged' })).toBe(1);
    const half = await t.audit.verify();
    expect(half.problems).toEqual([]);
    expect(half).toMatchObject({ ok: true, purgedThrough: 10 });

    await restore();
    const rest = await t.audit.purge({ before, batchSize: 3 });
    expect(rest).toMatchObject({ deleted: 4, throughSeq: 10 });
    expect(rest.record).toBeUndefined();
    expect((await repository.find({ order: { seq: 'ASC' } })).filter((row) => row.action === 'order.noted').map((row) => row.seq)).toEqual([11, 12, 13]);
    expect(await repository.countBy({ action: 'audit.purged' })).toBe(1);
    expect((await t.audit.verify()).ok).toBe(true);
  }, 60_000);
});
