import { randomUUID } from 'node:crypto';
import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { In, type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditLogEntity, AuditUnitRecoveredError } from '../../lib/index.js';
import { JournalRecovery } from '../../lib/journal/journal-recovery.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { closeGate, gate, journaled, pausedInstances, sleep, takeForDead } from '../support/paused-instances.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { writerEvent } from '../support/writer-events.js';

@Controller('paused')
@UseGuards(TokenGuard)
class PausedController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Commits a change (its journal row is written), then waits for the gate before answering. */
  @Patch('orders/:id')
  @Audited('order.repriced', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async reprice(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.dataSource.getRepository(Order).update(id, { total: 77 });
    await gate.opened;
    return { id };
  }
}

/**
 * An instance whose lease looks dead while it is alive (a VM freeze, a blocked event loop,
 * a lease renewal stuck behind a saturated pool, for longer than `recoverAfter`): another
 * instance recovers its journal rows; when it resumes, the unit's own events are not
 * stored a second time.
 */
describe.each(databases())('an instance taken for dead whose request then completes, on %s', (kind) => {
  const instances = pausedInstances(kind);

  /** Sends the PATCH to the paused instance; returns once its change is committed and journaled (the handler then waits at the gate). */
  async function pausedRequest(app: TestApp, requestId: string): Promise<{ answer: Promise<Response> }> {
    const order = await app.seed(() => app.dataSource.getRepository(Order).save({ status: 'new', total: 1 }));
    closeGate();
    const answer = app.request(`/paused/orders/${order.id}`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(await journaled(app)).toBe(1);
    return { answer };
  }

  async function recovered(app: TestApp): Promise<void> {
    await takeForDead(app, instances.rescuer());
    expect(await app.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  }

  const recordOf = async (app: TestApp, requestId: string) =>
    (await app.rows()).filter((row) => row.requestId === requestId).map((row) => [row.action, row.kind, row.outcome]);

  it('stores one record of the request (the recovered one) and, fail-closed, answers 500 rather than 200', async () => {
    const paused = await instances.start({ controllers: [PausedController] });
    const requestId = `paused-closed-${kind}`;
    const { answer } = await pausedRequest(paused, requestId);
    await recovered(paused);

    gate.open!();
    const response = await answer;
    // Its own record (outcome `success`) could not be stored: another instance stored the unit as `unknown`.
    expect(response.status).toBe(500);
    // Nothing is retried in the background either.
    await paused.app.get(JournalRecovery).runPass();
    await sleep(200);
    expect(await recordOf(paused, requestId)).toEqual([['order.repriced', 'intent', 'unknown']]);
    expect(await paused.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });

  it('stores one record of the request fail-open too, and answers as the handler did', async () => {
    const paused = await instances.start({ controllers: [PausedController], audit: { failOpen: true } });
    const requestId = `paused-open-${kind}`;
    const { answer } = await pausedRequest(paused, requestId);
    await recovered(paused);

    gate.open!();
    expect((await answer).status).toBe(200);
    await paused.app.get(JournalRecovery).runPass();
    await sleep(200);
    expect(await recordOf(paused, requestId)).toEqual([['order.repriced', 'intent', 'unknown']]);
  });
});

/**
 * The writer stores the events of a unit whose journal rows it deletes only if every one
 * of those rows was still there: per unit, within a batch of several, and whether the
 * batch is one statement or several.
 */
describe.each(databases())('the writer, for units whose journal rows are gone, on %s', (kind) => {
  let db: TestDatabase;
  let app: TestApp;
  let writer: AuditWriter;
  let instanceId: string;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    app = await createTestApp({ db, adapter: 'express', audit: { recoverAfter: 60_000 } });
    writer = app.app.get(AuditWriter);
    instanceId = app.app.get(JournalRecovery).instanceId;
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  /** Journal rows of a unit of this instance, as its transactions would have written them. */
  async function journaled(unitId: string, count: number): Promise<string[]> {
    const ids = Array.from({ length: count }, () => randomUUID());
    const repository = app.dataSource.getRepository(AuditJournalEntity);
    await repository.save(ids.map((id) => repository.create({ id, unitId, instanceId, createdAt: new Date(), entry: { source: 'system', request: {}, changes: [] } })));
    return ids;
  }
  const journalOf = (unitIds: string[]) => app.dataSource.getRepository(AuditJournalEntity).count({ where: { unitId: In(unitIds) } });
  const stored = (action: string) => app.dataSource.getRepository(AuditLogEntity).count({ where: { action } });

  it('stores nothing of a unit whose rows another instance took, and the rest of its batch in full', async () => {
    const [taken, partly, whole] = [randomUUID(), randomUUID(), randomUUID()];
    const takenIds = await journaled(taken, 2);
    const partlyIds = await journaled(partly, 2);
    const wholeIds = await journaled(whole, 2);
    // Recovered elsewhere: all of one unit's rows, one of another's.
    await app.dataSource.getRepository(AuditJournalEntity).delete({ id: In([...takenIds, partlyIds[0]!]) });

    // The first write goes alone; the next ones queue behind it and go as one batch.
    const writes = [
      writer.write([writerEvent('paused.plain')]),
      writer.write([writerEvent('paused.taken'), writerEvent('paused.taken')], { journalUnits: [taken], journalRows: takenIds }),
      writer.write([writerEvent('paused.partly')], { journalUnits: [partly], journalRows: partlyIds }),
      writer.write([writerEvent('paused.whole'), writerEvent('paused.whole')], { journalUnits: [whole], journalRows: wholeIds }),
      writer.write([writerEvent('paused.unguarded')]),
    ];
    const results = await Promise.allSettled(writes);

    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(AuditUnitRecoveredError);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(AuditUnitRecoveredError);
    expect([await stored('paused.plain'), await stored('paused.taken'), await stored('paused.partly'), await stored('paused.whole'), await stored('paused.unguarded')]).toEqual([1, 0, 0, 2, 1]);
    expect(await journalOf([taken, whole])).toBe(0);
    // The row of the partly recovered unit that is still there stays, for recovery to record:
    // a change its unit committed after the recovery would otherwise have no record at all.
    expect(await journalOf([partly])).toBe(1);
  });

  it('stores nothing of a unit whose rows are gone when its events take several statements, and all of one whose rows are there', async () => {
    const [taken, kept] = [randomUUID(), randomUUID()];
    const takenIds = await journaled(taken, 1);
    const keptIds = await journaled(kept, 1);
    await app.dataSource.getRepository(AuditJournalEntity).delete({ id: In(takenIds) });
    // More rows than one statement takes on any database.
    const many = (action: string) => Array.from({ length: 2_500 }, () => writerEvent(action));

    await expect(writer.write(many('paused.big-taken'), { journalUnits: [taken], journalRows: takenIds })).rejects.toBeInstanceOf(AuditUnitRecoveredError);
    await writer.write(many('paused.big-kept'), { journalUnits: [kept], journalRows: keptIds });

    expect(await stored('paused.big-taken')).toBe(0);
    expect(await stored('paused.big-kept')).toBe(2_500);
    expect(await journalOf([taken, kept])).toBe(0);
  });
});
