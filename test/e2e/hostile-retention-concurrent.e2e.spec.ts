// Two instances of an application (two Nest apps on the same PostgreSQL schema or MariaDB
// database) purge at once: one signed record, every old event removed once, the new ones
// kept, verify() ok, and what each purge reports as deleted adds up to what was removed.
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { logNotes } from '../support/retention.js';

const ORIGIN = 'audit.example.test/hostile-retention';
const { privateKey } = generateKeyPairSync('ed25519');
const integrity = { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } };

describe.each(databases().filter((kind) => kind !== 'sqlite'))('two instances purging at once on %s', (kind) => {
  const opened: TestApp[] = [];
  let db: TestDatabase | undefined;

  afterEach(async () => {
    for (const app of opened.splice(0)) await app.close();
    await db?.drop();
    db = undefined;
  });


  it.each([
    ['with integrity', { integrity }],
    ['without integrity', {}],
  ])('%s: each old event is counted once', async (_name, audit) => {
    db = await createTestDatabase(kind);
    const a = await createTestApp({ db, adapter: 'express', audit });
    const b = await createTestApp({ db, adapter: 'express', audit });
    opened.push(a, b);
    await logNotes(a.audit, 120, 'old');
    await sleep(15);
    const before = new Date();
    await sleep(15);
    await logNotes(b.audit, 3, 'new');
    const repository = a.dataSource.getRepository(AuditLogEntity);
    const stored = await repository.count();

    const [first, second] = await Promise.all([a.audit.purge({ before, batchSize: 7 }), b.audit.purge({ before, batchSize: 7 })]);

    const purgeEvents = await repository.countBy({ action: 'audit.purged' });
    const removed = stored + purgeEvents - (await repository.count());
    expect(removed).toBe(120);
    expect(first!.deleted + second!.deleted).toBe(removed);
    if ('integrity' in audit) {
      expect(purgeEvents).toBe(1);
      expect((await a.audit.verify()).ok).toBe(true);
    }
  }, 120_000);
});
