// The purge decides how far to delete from the `throughSeq` of the newest `audit.purged`
// event. That value is not signed: anyone able to write an `audit.purged` event (the
// public `log()` API, or an INSERT, which the append-only guards allow) can make the next
// purge delete events that are not older than `before`, and stop it recording.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { logNotes } from '../support/retention.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('purge scope from an unsigned audit.purged event on %s', (kind) => {
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


  it('an audit.purged event claiming a large throughSeq does not make the purge delete newer events', async () => {
    const app = await start();
    await logNotes(app.audit, 4, 'old');
    await sleep(15);
    const before = new Date();
    await sleep(15);
    const newIds = await logNotes(app.audit, 4, 'new');
    await app.audit.checkpoint();

    // No signature, no note: just a number in a context.
    await app.audit.log({ action: 'audit.purged', context: { throughSeq: 1_000_000 } });

    const result = await app.audit.purge({ before });
    const left = await app.dataSource.getRepository(AuditLogEntity).find();
    // The events newer than `before` are kept.
    expect(left.filter((row) => newIds.includes(row.id)).map((row) => row.id).sort()).toEqual([...newIds].sort());
    // The four old ones are removed under a signed record.
    expect(result).toMatchObject({ deleted: 4, throughSeq: 4 });
    expect(result.record).toMatch(/\npurge /);
    const verified = await app.audit.verify();
    expect(verified.problems).toEqual([]);
    expect(verified).toMatchObject({ ok: true, purgedThrough: 4 });
  });

  it("another log's validly signed record (same key and origin) does not stretch the purge either", async () => {
    const other = await start();
    await logNotes(other.audit, 10, 'other');
    await sleep(15);
    const record = (await other.audit.purge({ before: new Date() })).record!;
    expect(record).toMatch(/\n10\n/);

    const app = await start();
    await logNotes(app.audit, 6, 'old');
    await sleep(15);
    const before = new Date();
    await sleep(15);
    const newIds = await logNotes(app.audit, 6, 'new');
    await app.audit.checkpoint();
    await app.audit.log({ action: 'audit.purged', context: { throughSeq: 10, note: record } });

    const result = await app.audit.purge({ before });
    const left = await app.dataSource.getRepository(AuditLogEntity).find();
    expect(left.filter((row) => newIds.includes(row.id)).map((row) => row.id).sort()).toEqual([...newIds].sort());
    expect(result).toMatchObject({ deleted: 6, throughSeq: 6 });
  });
});
