import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditService, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A provider whose `@Audited` methods a request calls, awaited or left running after it answered. */
@Injectable()
class Reminders {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly audit: AuditService,
  ) {}

  @Audited('reminder.created')
  async create(note: string): Promise<Order> {
    return this.orders.save(this.orders.create({ status: 'reminder', note }));
  }

  /** Calls another `@Audited` method and logs an event of its own. */
  @Audited('reminder.batch')
  async batch(note: string): Promise<void> {
    await this.create(note);
    await this.audit.log({ action: 'reminder.noted', context: { note } });
  }
}

@Controller('late-audited')
@UseGuards(TokenGuard)
class LateAuditedController {
  /** Errors thrown by work a request left running (there is no caller to hand them to). */
  readonly errors: unknown[] = [];

  constructor(
    private readonly reminders: Reminders,
    private readonly audit: AuditService,
  ) {}

  /** Answers at once; a timer calls an `@Audited` provider method 300 ms later. */
  @Post('timer')
  @Audited('thing.scheduled')
  timer(@Body() body: { note: string }): { ok: true } {
    setTimeout(() => void this.reminders.create(body.note).catch((error: unknown) => this.errors.push(error)), 300);
    return { ok: true };
  }

  /** Answers at once; an un-awaited promise calls an `@Audited` provider method after the response. */
  @Post('unawaited')
  @Audited('thing.unawaited')
  unawaited(@Body() body: { note: string }): { ok: true } {
    void sleep(300)
      .then(() => this.reminders.create(body.note))
      .catch((error: unknown) => this.errors.push(error));
    return { ok: true };
  }

  /** Answers at once; a timer calls an `@Audited` method that calls another and logs. */
  @Post('nested')
  @Audited('thing.batched')
  nested(@Body() body: { note: string }): { ok: true } {
    setTimeout(() => void this.reminders.batch(body.note).catch((error: unknown) => this.errors.push(error)), 300);
    return { ok: true };
  }

  /** Answers at once; a timer runs work as a service account. */
  @Post('run-as')
  @Audited('thing.delegated')
  runAs(@Body() body: { note: string }): { ok: true } {
    setTimeout(
      () =>
        void this.audit
          .runAs({ type: 'service', id: 'mailer' }, () => this.audit.log({ action: 'mail.sent', context: { note: body.note } }))
          .catch((error: unknown) => this.errors.push(error)),
      300,
    );
    return { ok: true };
  }

  /** Awaits the `@Audited` provider method: a nested call of the live request. */
  @Post('awaited')
  @Audited('thing.awaited')
  async awaited(@Body() body: { note: string }): Promise<{ ok: true }> {
    await this.reminders.create(body.note);
    return { ok: true };
  }
}

const ALICE = { authorization: 'Bearer alice-token' };

const attribution = (row: AuditLogEntity) => ({
  actorType: row.actorType,
  actorId: row.actorId,
  source: row.source,
  originRequestId: (row.context as Record<string, unknown> | null)?.['originRequestId'],
});

describe.each(databases())('an @Audited provider method called after its request’s unit ended, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let controller: LateAuditedController;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [LateAuditedController], providers: [Reminders] });
    controller = t.app.get(LateAuditedController);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    controller.errors.length = 0;
    await t.clearAudit();
  });

  /** Sends the request as alice, waits for `count` rows, and returns them with the request's id. */
  const late = async (route: string, note: string, count: number) => {
    const response = await t.request(`/late-audited/${route}`, { method: 'POST', json: { note }, headers: ALICE });
    expect(response.status).toBe(201);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toBeTruthy();
    await expect.poll(async () => (await t.rows()).length, { timeout: 5000 }).toBeGreaterThanOrEqual(count);
    await sleep(200); // nothing more arrives
    expect(controller.errors).toEqual([]);
    return { requestId, rows: await t.rows() };
  };

  for (const [route, handlerAction] of [
    ['timer', 'thing.scheduled'],
    ['unawaited', 'thing.unawaited'],
  ] as const) {
    it(`${route}: the call is the system's, with the request's id as context.originRequestId, and claims its insert`, async () => {
      const note = `late-${route}`;
      const { requestId, rows } = await late(route, note, 2);
      const order = await t.dataSource.getRepository(Order).findOneByOrFail({ note });

      // Exactly the request's own event and the late call's: no fallback row for the insert.
      expect(rows.map((row) => row.action).sort()).toEqual([handlerAction, 'reminder.created'].sort());
      const handler = rows.find((row) => row.action === handlerAction)!;
      expect(attribution(handler)).toEqual({ actorType: 'user', actorId: '1', source: 'http', originRequestId: undefined });
      expect(handler.requestId).toBe(requestId);

      const reminder = rows.find((row) => row.action === 'reminder.created')!;
      expect(reminder.kind).toBe('intent');
      expect(reminder.outcome).toBe('success');
      expect(attribution(reminder)).toEqual({ actorType: 'system', actorId: null, source: 'system', originRequestId: requestId });
      expect(reminder.requestId).not.toBe(requestId);
      expect(reminder.changes).toHaveLength(1);
      expect(reminder.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert' });
    });
  }

  it('a nested @Audited call and a log() inside the late call are the system’s too, each claiming only its own', async () => {
    const { requestId, rows } = await late('nested', 'late-nested', 4);
    const order = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'late-nested' });

    expect(rows.map((row) => row.action).sort()).toEqual(['reminder.batch', 'reminder.created', 'reminder.noted', 'thing.batched']);
    for (const action of ['reminder.batch', 'reminder.created', 'reminder.noted']) {
      const row = rows.find((candidate) => candidate.action === action)!;
      expect({ action, ...attribution(row) }).toEqual({ action, actorType: 'system', actorId: null, source: 'system', originRequestId: requestId });
    }
    expect(rows.find((row) => row.action === 'reminder.created')!.changes).toMatchObject([{ entity: 'Order', id: String(order.id), operation: 'insert' }]);
    expect(rows.find((row) => row.action === 'reminder.batch')!.changes).toEqual([]);
    expect(rows.find((row) => row.action === 'reminder.noted')!.context).toMatchObject({ note: 'late-nested' });
  });

  it('runAs started after the request’s unit ended: its actor, with the request’s id as context.originRequestId', async () => {
    const { requestId, rows } = await late('run-as', 'late-run-as', 2);
    expect(rows.map((row) => row.action).sort()).toEqual(['mail.sent', 'thing.delegated']);
    const mail = rows.find((row) => row.action === 'mail.sent')!;
    expect({ ...attribution(mail), actorId: mail.actorId }).toEqual({ actorType: 'service', actorId: 'mailer', source: 'job', originRequestId: requestId });
    expect(mail.context).toMatchObject({ note: 'late-run-as' });
  });

  it('a call the request awaits stays the request user’s, without an originRequestId', async () => {
    const { requestId, rows } = await late('awaited', 'awaited', 2);
    expect(rows.map((row) => row.action).sort()).toEqual(['reminder.created', 'thing.awaited']);
    const reminder = rows.find((row) => row.action === 'reminder.created')!;
    expect(attribution(reminder)).toEqual({ actorType: 'user', actorId: '1', source: 'http', originRequestId: undefined });
    expect(reminder.requestId).toBe(requestId);
    expect(reminder.changes).toHaveLength(1);
  });
});
