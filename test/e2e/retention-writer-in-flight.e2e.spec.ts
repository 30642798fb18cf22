// A purge beside a write in flight: it removes the old events and their subject rows without
// waiting for the rows another transaction is inserting.
import { type QueryRunner } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditSubjectEntity } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { storeEventsAt } from '../support/partitions.js';
import { databases } from '../support/test-database.js';
import { appsPerTest } from '../support/test-apps.js';
import { within } from '../support/within.js';
import { writerEvent } from '../support/writer-events.js';

/** How long the purge may take; a lock wait lasts until InnoDB's timeout (50 s by default). */
const WITHIN_MS = 5_000;
/** Old events, and recent ones: the purged events are most of the log's rows. */
const OLD = 24;
const RECENT = 6;

/**
 * On MariaDB a batch's DELETEs (`… WHERE event_id IN (…)`, `… WHERE id IN (…)`) were read as
 * scans of the whole of `audit_subject` and `audit_log` whenever the batch's events were a
 * fifth of the log or more (a batch of 5,000 in a log of up to 25,000 events), and a
 * scanning DELETE locks every row it reads: the purge waited for the event a request was
 * storing at that moment, and the requests' inserts waited for the purge.
 */
describe.each(databases().filter((kind) => kind !== 'sqlite'))('retention: a purge beside an event being stored, on %s', (kind) => {
  const env = appsPerTest();

  it(`removes the ${OLD} old events and their subject rows at once, and keeps the event in flight`, async () => {
    await env.database(kind);
    const app = await env.start({ adapter: 'express' });
    const old = await storeEventsAt(app, new Date(Date.now() - 86_400_000), OLD, 'old');
    const recent = await storeEventsAt(app, new Date(Date.now() - 60_000), RECENT, 'recent');
    const subjects = app.dataSource.getRepository(AuditSubjectEntity);
    expect(await subjects.count()).toBe(OLD + RECENT);

    // A request's write in flight: its event and subject row inserted, its transaction not yet committed.
    const stored = writerEvent('in-flight.stored', {
      targetType: 'Customer',
      targetId: 'in-flight',
      changes: [{ entity: 'Order', id: 'in-flight', operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }] as never,
    });
    let holder: QueryRunner | undefined = app.dataSource.createQueryRunner();
    let purge: Promise<unknown> | undefined;
    try {
      await holder.connect();
      await holder.startTransaction('READ COMMITTED');
      await app.app.get(AuditWriter).write([stored], { manager: holder.manager });

      purge = app.audit.purge({ before: new Date(Date.now() - 3_600_000) });
      expect(await within(purge, WITHIN_MS)).toMatchObject({ deleted: OLD });

      await holder.commitTransaction();
      await holder.release();
      holder = undefined;
    } finally {
      if (holder?.isTransactionActive) await holder.rollbackTransaction();
      await holder?.release();
      await purge?.catch(() => undefined);
    }
    // Besides the purge's own record (`audit.purged`).
    const left = (await app.dataSource.getRepository(AuditLogEntity).find({ select: { id: true, action: true } }))
      .filter((row) => row.action !== 'audit.purged')
      .map((row) => row.id)
      .sort();
    expect(left).toEqual([...recent, stored.id].sort());
    expect(await subjects.countBy({ eventId: stored.id })).toBe(1);
    expect((await subjects.find()).filter((row) => old.includes(row.eventId))).toEqual([]);
  }, 90_000);
});
