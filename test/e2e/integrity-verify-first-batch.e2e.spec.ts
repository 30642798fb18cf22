// verify() started before the log's first batch is sequenced, with that batch committed
// while verify() reads: the events and the tree it reads must describe the same log. It
// read the leaves before the batch and the events after it, and reported the batch's
// events as `inserted` (seen on PostgreSQL when verify() runs while the app writes).
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { DatabaseLogSource } from '../../lib/integrity/database-log-source.js';
import { verifyLog } from '../../lib/integrity/log-verifier.js';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const { privateKey } = generateKeyPairSync('ed25519');

/** Everything an async iterable yields. */
async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const found: T[] = [];
  for await (const item of items) found.push(item);
  return found;
}

describe.each(databases())('verify() while the first batch is sequenced, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    t = undefined;
    await db?.drop();
    db = undefined;
  });

  it('the batch committed between the reads of the leaves and of the events is read as neither', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: 'first-batch.example.test/log', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000, ms: 3_600_000 } } },
    });
    for (let i = 0; i < 3; i++) await t.audit.log({ action: 'first.batch', reason: `event ${i}` });

    const source = new DatabaseLogSource(t.dataSource);
    const bound = await source.treeBound();
    expect(bound).toBeUndefined(); // nothing sequenced or signed yet
    const data = source.dataUpTo(bound);
    const leaves = await all(data.leaves!); // read before the batch
    await t.audit.checkpoint(); // the integrator sequences the three events and signs
    const events = await all(data.events); // read after it

    expect(leaves).toEqual([]);
    expect(events.map((event) => event.seq)).toEqual([]);

    const result = await verifyLog({ ...source.dataUpTo(await source.treeBound()), purges: [], checkSignatures: false });
    expect(problemBriefs(result.problems)).toEqual([]);
    expect(result).toMatchObject({ ok: true, treeSize: 3 });
  });

  it('events given a seq by hand in a log without any tree row or checkpoint are still inserted', async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: 'first-batch.example.test/log', sequenceEvery: 60_000 } } });
    await t.audit.log({ action: 'first.batch', reason: 'forged' });
    await dropAppendOnlyGuards(t.dataSource);
    await t.dataSource.getRepository(AuditLogEntity).createQueryBuilder().update().set({ seq: 1 }).execute();
    const source = new DatabaseLogSource(t.dataSource);
    const result = await verifyLog({ ...source.dataUpTo(await source.treeBound()), purges: [], checkSignatures: false });
    expect(problemBriefs(result.problems)).toEqual(['inserted seq=1']);
  });
});
