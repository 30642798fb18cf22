// The integrator reads and hashes the next batch's events while the current batch's
// statements run (PostgreSQL and MySQL/MariaDB; SQLite reads in the batch). These tests
// check that the prefetched events give the same tree as reading them in the batch, and
// that events sequenced by another instance between the prefetch and its use are not
// sequenced twice.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditTreeEntity, type AuditModuleOptions } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import type { TestApp } from '../app/create-test-app.js';
import { storeEventsAt } from '../support/partitions.js';
import { expectWholeTree } from '../support/sequenced-log.js';
import { databases } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';

const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: 'audit.example.test/prefetch', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };

/** The integrator's prefetch in flight, if any. */
const prefetchOf = (integrator: AuditIntegrator): Promise<unknown> | undefined => (integrator as unknown as { prefetched?: { read: Promise<unknown> } }).prefetched?.read;

describe.each(databases())('integrator: the next batch read ahead on %s', (kind) => {
  const env = appsPerTest();
  const start = (): Promise<TestApp> => env.start({ adapter: 'express', audit: INTEGRITY });


  it('a backlog of several batches: the batches after the first use the events read ahead, and the tree is the same', async () => {
    await env.database(kind);
    const t = await start();
    await storeEventsAt(t, new Date(Date.now() - 60_000), 5_500, 'p');

    const checkpoint = await t.audit.checkpoint();

    expect(checkpoint.treeSize).toBe(5_500);
    const integrator = t.app.get(AuditIntegrator);
    // Batches of 2,000: the second and third are read while the one before is stored.
    if (kind === 'sqlite') expect(integrator.stats.prefetched).toBe(0);
    else expect(integrator.stats.prefetched).toBe(2);
    await expectWholeTree(t, 5_500);
  }, 120_000);

  // (SQLite's test database lives in memory: a second app would have a database of its own.)
  it.skipIf(kind === 'sqlite')('events another instance sequences between the read ahead and its batch are not sequenced again', async () => {
    await env.database(kind);
    const a = await start();
    const b = await start();
    await storeEventsAt(a, new Date(Date.now() - 60_000), 4_500, 'r');
    const integrator = a.app.get(AuditIntegrator);

    const first = await integrator.batch(0, false);
    expect(first).toMatchObject({ busy: false, sequenced: 2_000 });
    await prefetchOf(integrator); // the next 2,000 events, read and hashed while they had no seq
    expect((await b.audit.checkpoint()).treeSize).toBe(4_500); // the other instance sequences them first
    await storeEventsAt(a, new Date(Date.now() - 30_000), 100, 's');

    // The batch built on the events read ahead finds them sequenced: it is abandoned, nothing is written.
    const stale = await integrator.batch(0, false);
    expect(stale).toMatchObject({ busy: true, sequenced: 0 });
    expect(await a.dataSource.getRepository(AuditTreeEntity).countBy({ level: 0 })).toBe(4_500);

    const checkpoint = await a.audit.checkpoint();

    expect(checkpoint.treeSize).toBe(4_600);
    await expectWholeTree(a, 4_600);
  }, 120_000);
});
