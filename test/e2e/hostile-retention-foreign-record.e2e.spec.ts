// verify() on the database takes the largest validly signed purge record as the log's
// start, and treats every stored leaf at or below it without its event as purged. It
// must bind that record to this log's tree: a record signed by the same key for another
// log (a staging copy, another tenant's schema with the same configuration) cannot
// excuse rows deleted here.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { logNotes } from '../support/retention.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('a purge record of another log on %s', (kind) => {
  const opened: Array<{ db: TestDatabase; t: TestApp }> = [];

  afterEach(async () => {
    for (const { db, t } of opened.splice(0)) {
      await t.close();
      await db.drop();
    }
  });

  async function start(): Promise<TestApp> {
    const db = await createTestDatabase(kind);
    const t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    opened.push({ db, t });
    return t;
  }


  it('rows deleted here and "explained" by the other log\'s signed record are still missing', async () => {
    // The other log: 8 events purged under a validly signed record.
    const other = await start();
    await logNotes(other.audit, 8, 'other');
    await sleep(15);
    const record = (await other.audit.purge({ before: new Date() })).record!;
    expect(record).toMatch(/\n8\n/);

    // This log: 10 events, checkpointed; an administrator deletes the first five.
    const app = await start();
    const ids = await logNotes(app.audit, 10, 'here');
    await app.audit.checkpoint();
    expect((await app.audit.verify()).ok).toBe(true);
    await dropAppendOnlyGuards(app.dataSource);
    const q = (name: string) => app.dataSource.driver.escape(name);
    const table = app.dataSource.getMetadata(AuditLogEntity).tablePath.split('.').map(q).join('.');
    const placeholders = [1, 2, 3, 4, 5].map((i) => (kind === 'postgres' ? `$${i}` : '?')).join(', ');
    await app.dataSource.query(`DELETE FROM ${table} WHERE ${q('seq')} IN (${placeholders})`, [1, 2, 3, 4, 5]);
    // …and stores the other log's record where verify() looks for purge records.
    await app.audit.log({ action: 'audit.purged', context: { note: record } });

    const result = await app.audit.verify();
    expect(result.ok).toBe(false);
    expect(result.problems.filter((problem) => problem.kind === 'missing').map((problem) => problem.id)).toEqual(ids.slice(0, 5));
    expect(result.purgedThrough).toBeUndefined();
  });
});
