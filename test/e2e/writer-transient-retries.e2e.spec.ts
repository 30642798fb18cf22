import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { writerEvent } from '../support/writer-events.js';

/** Deadlocks the writer's inserts run into before one goes through: more than one retry needs. */
const DEADLOCKS = 3;

/**
 * A batch that loses to another transaction (a deadlock, as concurrent batches and the
 * app's own transactions can cause under load) is tried again, a few times, before its
 * callers fail: 200 concurrent requests on MariaDB met two deadlocks in a row often
 * enough to answer some of them 500. The deadlocks are made by a trigger on `audit_log`
 * that raises the database's own deadlock error for the first inserts (counted by a
 * sequence, which a rollback does not undo).
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('the writer after deadlocks, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let writer: AuditWriter;

  const schema = (): string | undefined => ('schema' in db.options ? (db.options.schema as string | undefined) : undefined);
  const name = (object: string): string => (kind === 'postgres' ? `${schema() ? `"${schema()}".` : ''}"${object}"` : `\`${object}\``);

  /** Makes the next `failures` inserts into `audit_log` fail with a deadlock, then lets them through. */
  async function deadlockNext(failures: number): Promise<void> {
    const q = (sql: string) => t.dataSource.query(sql);
    if (kind === 'postgres') {
      await q(`CREATE SEQUENCE ${name('deadlocks_made')}`);
      await q(`CREATE FUNCTION ${name('deadlock_first')}() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
          IF nextval('${schema() ? `${schema()}.` : ''}deadlocks_made') <= ${failures} THEN
            RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = '40P01';
          END IF;
          RETURN NULL;
        END $f$`);
      await q(`CREATE TRIGGER deadlock_first BEFORE INSERT ON ${name('audit_log')} FOR EACH STATEMENT EXECUTE FUNCTION ${name('deadlock_first')}()`);
    } else {
      await q(`CREATE SEQUENCE ${name('deadlocks_made')}`);
      await q(`CREATE TRIGGER deadlock_first BEFORE INSERT ON ${name('audit_log')} FOR EACH ROW
        BEGIN
          IF NEXTVAL(${name('deadlocks_made')}) <= ${failures} THEN
            SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found when trying to get lock (made by the test)';
          END IF;
        END`);
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express' });
    writer = t.app.get(AuditWriter);
  });
  afterEach(async () => {
    const q = (sql: string) => t.dataSource.query(sql);
    if (kind === 'postgres') {
      await q(`DROP TRIGGER IF EXISTS deadlock_first ON ${name('audit_log')}`);
      await q(`DROP FUNCTION IF EXISTS ${name('deadlock_first')}()`);
    } else {
      await q('DROP TRIGGER IF EXISTS deadlock_first');
    }
    await q(`DROP SEQUENCE IF EXISTS ${name('deadlocks_made')}`);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const stored = (action: string) => t.dataSource.getRepository(AuditLogEntity).countBy({ action });

  it(`stores a batch that met ${DEADLOCKS} deadlocks in a row, once`, async () => {
    await deadlockNext(DEADLOCKS);
    await writer.write([writerEvent('retried.after-deadlocks'), writerEvent('retried.after-deadlocks')]);
    expect(await stored('retried.after-deadlocks')).toBe(2);
  });

  it('fails its callers with the deadlock when the database keeps refusing, and stores nothing', async () => {
    await deadlockNext(1_000);
    await expect(writer.write([writerEvent('retried.never')])).rejects.toThrow(/[Dd]eadlock/);
    expect(await stored('retried.never')).toBe(0);
  });
});
