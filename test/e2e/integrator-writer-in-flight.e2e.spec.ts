// The integrator's batch beside a write in flight: it sequences the events it read without
// waiting for the rows another transaction is inserting, and without holding up that
// transaction's inserts.
import { generateKeyPairSync } from 'node:crypto';
import { IsNull, Not, type QueryRunner } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditLogEntity, type AuditModuleOptions } from '../../lib/index.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { storeEventsAt } from '../support/partitions.js';
import { expectWholeTree } from '../support/sequenced-log.js';
import { databases } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';
import { writerEvent } from '../support/writer-events.js';

const { privateKey } = generateKeyPairSync('ed25519');
const INTEGRITY: AuditModuleOptions = { integrity: { signingKey: privateKey, origin: 'audit.example.test/in-flight', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } };
/** Events of the batch: most of a young log's rows. */
const EVENTS = 24;
/** How long the batch may wait for the integrator's lock and a row another transaction holds. */
const WAIT_MS = 4_000;

/**
 * On MariaDB the seq UPDATE (`… WHERE seq IS NULL AND id IN (…)`) was read as a scan of the
 * whole of `audit_log` whenever the batch's events were most of its rows (a young log, up to
 * a few thousand events), and a scanning UPDATE locks every row it reads: it waited for the
 * event a request was storing at that moment, and the batch failed as a lost race, pass after
 * pass while requests came in.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('integrator: a batch beside an event being stored, on %s', (kind) => {
  const env = appsPerTest();

  it(`sequences the ${EVENTS} stored events at once, and the event in flight once it is stored`, async () => {
    await env.database(kind);
    const app = await env.start({ adapter: 'express', audit: INTEGRITY });
    await storeEventsAt(app, new Date(Date.now() - 60_000), EVENTS, 'f');

    // A request's write in flight: its event inserted, its transaction not yet committed.
    let holder: QueryRunner | undefined = app.dataSource.createQueryRunner();
    try {
      await holder.connect();
      await holder.startTransaction('READ COMMITTED');
      await app.app.get(AuditWriter).write([writerEvent('in-flight.stored')], { manager: holder.manager });

      const started = Date.now();
      const outcome = await app.app.get(AuditIntegrator).batch(WAIT_MS, false);
      const elapsed = Date.now() - started;

      expect(outcome.lostRace?.message).toBeUndefined();
      expect(outcome).toMatchObject({ busy: false, sequenced: EVENTS, treeSize: EVENTS });
      expect(elapsed).toBeLessThan(WAIT_MS / 2);
      expect(await app.dataSource.getRepository(AuditLogEntity).countBy({ seq: Not(IsNull()) })).toBe(EVENTS);

      await holder.commitTransaction();
      await holder.release();
      holder = undefined;
    } finally {
      if (holder?.isTransactionActive) await holder.rollbackTransaction();
      await holder?.release();
    }
    expect((await app.audit.checkpoint()).treeSize).toBe(EVENTS + 1);
    await expectWholeTree(app, EVENTS + 1);
  }, 60_000);
});
