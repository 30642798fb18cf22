// A `retention.schedule` longer than a Node timer can wait (2^31 - 1 ms, about 24.8 days)
// is accepted by the options (they allow up to 100 years), but Node runs a longer
// interval after 1 ms: the purge would then run back to back instead of once a month.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

describe('a retention schedule of 30 days', () => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('runs the first purge within ten seconds of start-up, then not again for 30 days', async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter: 'express', audit: { retention: { maxAge: '1s', schedule: '30d' } } });
    const events = t.dataSource.getRepository(AuditLogEntity);
    const [first] = [await t.audit.log({ action: 'order.noted', reason: 'purged by the first run' })];
    // The first run comes at most ten seconds after start-up.
    const deadline = Date.now() + 25_000;
    while (Date.now() < deadline && (await events.countBy({ id: first! })) > 0) await sleep(250);
    expect(await events.countBy({ id: first! })).toBe(0);

    // Old enough for the next run, which is 30 days away.
    const kept = await t.audit.log({ action: 'order.noted', reason: 'waits for the next run' });
    await sleep(3_000);
    expect(await events.countBy({ id: kept })).toBe(1);
    expect(await events.countBy({ action: 'audit.purged' })).toBe(1);
  }, 60_000);
});
