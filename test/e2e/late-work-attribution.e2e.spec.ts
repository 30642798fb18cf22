import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditService, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { notesOf } from '../support/changed-notes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class Jobs {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  /** Saves an order and logs an event about it (its target), in one transaction. */
  async madeAndLogged(note: string): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      const order = await m.save(Order, m.create(Order, { status: 'made', note }));
      await this.audit.log({ action: 'order.made', target: order }, { manager: m });
    });
  }

  /** Takes its time, then writes: called by a request that does not await it. */
  @Audited('reminder.created')
  async slowReminder(note: string): Promise<void> {
    await sleep(300);
    await this.orders.save(this.orders.create({ status: 'reminder', note }));
  }

  /** Writes and logs at once (then says so), waits, and writes again: the request answers in between. */
  @Audited('reminder.created')
  async twoStepReminder(note: string, firstDone: () => void): Promise<void> {
    await this.orders.save(this.orders.create({ status: 'reminder', note: `${note}-early` }));
    await this.audit.log({ action: 'reminder.noted', context: { note } });
    firstDone();
    await sleep(300);
    await this.orders.save(this.orders.create({ status: 'reminder', note: `${note}-late` }));
  }

  /** Calls another `@Audited` method of its own and waits for it. */
  @Audited('reminder.outer')
  async outerReminder(note: string, started: () => void): Promise<void> {
    await this.innerReminder(note, started);
  }

  /** Says it started, waits, then writes. */
  @Audited('reminder.inner')
  async innerReminder(note: string, started: () => void): Promise<void> {
    started();
    await sleep(300);
    await this.orders.save(this.orders.create({ status: 'reminder', note }));
  }
}

@Controller('nested-late')
@UseGuards(TokenGuard)
class NestedLateController {
  constructor(
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    private readonly audit: AuditService,
    private readonly jobs: Jobs,
  ) {}

  /** A runAs inside the request leaves a timer running; the request then answers. */
  @Post('run-as-timer')
  @Audited('thing.delegated')
  async runAsTimer(@Body() body: { note: string }): Promise<{ ok: true }> {
    await this.audit.runAs({ type: 'service', id: 'mailer' }, async () => {
      await this.orders.save(this.orders.create({ status: 'mail', note: `${body.note}-mail` }));
      setTimeout(() => void this.orders.save(this.orders.create({ status: 'late', note: `${body.note}-late` })), 50);
    });
    return { ok: true };
  }

  /** A timer after the response writes an order and logs about it, in one transaction. */
  @Post('late-log-target')
  @Audited('thing.scheduled')
  lateLogTarget(@Body() body: { note: string }): { ok: true } {
    setTimeout(() => void this.jobs.madeAndLogged(body.note), 50);
    return { ok: true };
  }

  /** Starts an @Audited provider call without awaiting it, answers once its first write is done; the call writes again later. */
  @Post('unawaited-two-steps')
  @Audited('thing.unawaited')
  async unawaitedTwoSteps(@Body() body: { note: string }): Promise<{ ok: true }> {
    await new Promise<void>((firstDone) => void this.jobs.twoStepReminder(body.note, firstDone));
    return { ok: true };
  }

  /** Starts an @Audited call (which awaits another) without awaiting it; answers once the inner call has started. */
  @Post('unawaited-nested')
  @Audited('thing.unawaited')
  async unawaitedNested(@Body() body: { note: string }): Promise<{ ok: true }> {
    await new Promise<void>((started) => void this.jobs.outerReminder(`${body.note}-late`, started));
    return { ok: true };
  }

  /** Starts a runAs without awaiting it and answers at once; it writes and logs 300 ms later. */
  @Post('unawaited-run-as')
  @Audited('thing.delegated')
  unawaitedRunAs(@Body() body: { note: string }): { ok: true } {
    void this.audit.runAs({ type: 'service', id: 'mailer' }, async () => {
      await sleep(300);
      await this.orders.save(this.orders.create({ status: 'mail', note: `${body.note}-mail` }));
      await this.audit.log({ action: 'mail.sent' });
    });
    return { ok: true };
  }

  /** Starts an @Audited provider call without awaiting it and answers at once; the call writes 300 ms later. */
  @Post('unawaited-call')
  @Audited('thing.unawaited')
  unawaitedCall(@Body() body: { note: string }): { ok: true } {
    void this.jobs.slowReminder(`${body.note}-late`);
    return { ok: true };
  }
}

const origin = (row: AuditLogEntity) => (row.context as Record<string, unknown> | null)?.['originRequestId'];
const attribution = (row: AuditLogEntity) => ({
  action: row.action,
  kind: row.kind,
  actor: `${row.actorType}:${row.actorId}`,
  source: row.source,
  requestId: row.requestId,
  originRequestId: origin(row),
  notes: notesOf(row),
});

describe.each(databases())('work a request leaves running after its response, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [NestedLateController], providers: [Jobs] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('a timer left running by a runAs inside a request: system, with the HTTP request’s id as originRequestId', async () => {
    const requestId = `req-${Date.now()}`;
    const response = await t.request('/nested-late/run-as-timer', {
      method: 'POST',
      json: { note: 'n1' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    await expect.poll(async () => (await t.rows()).some((row) => notesOf(row).includes('n1-late')), { timeout: 5000 }).toBe(true);
    const late = (await t.rows()).find((row) => notesOf(row).includes('n1-late'))!;
    expect({ actorType: late.actorType, source: late.source, originRequestId: origin(late) }).toEqual({
      actorType: 'system',
      source: 'system',
      originRequestId: requestId,
    });
  });

  it('log({ target }) in a transaction, in late work of a request: the event claims its target’s change, as it does outside any unit (one event)', async () => {
    const note = `made-${Date.now()}`;
    {
      const response = await t.request('/nested-late/late-log-target', { method: 'POST', json: { note }, headers: { authorization: 'Bearer alice-token' } });
      expect(response.status).toBe(201);
      await expect.poll(async () => (await t.rows()).some((row) => row.action === 'order.made'), { timeout: 5000 }).toBe(true);
      await sleep(200); // nothing more arrives
    }
    const rows = (await t.rows()).filter((row) => row.action !== 'thing.scheduled');
    expect(rows.map((row) => ({ action: row.action, kind: row.kind, actorType: row.actorType, notes: notesOf(row) }))).toEqual([
      { action: 'order.made', kind: 'intent', actorType: 'system', notes: [note] },
    ]);
  });

  it('an un-awaited @Audited provider call that writes before and after the response: what it did before is the request’s, its event and later write the system’s', async () => {
    const requestId = `two-steps-${Date.now()}`;
    const response = await t.request('/nested-late/unawaited-two-steps', {
      method: 'POST',
      json: { note: 'n3' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    await expect.poll(async () => (await t.rows()).some((row) => notesOf(row).includes('n3-late')), { timeout: 5000 }).toBe(true);
    await sleep(200); // nothing more arrives
    const rows = (await t.rows()).map(attribution);
    const late = rows.find((row) => row.action === 'reminder.created')!;
    expect(late.requestId).not.toBe(requestId);
    expect(rows.sort((a, b) => a.action.localeCompare(b.action))).toEqual([
      { action: 'order.created', kind: 'change', actor: 'user:1', source: 'http', requestId, originRequestId: undefined, notes: ['n3-early'] },
      { action: 'reminder.created', kind: 'intent', actor: 'system:null', source: 'system', requestId: late.requestId, originRequestId: requestId, notes: ['n3-late'] },
      { action: 'reminder.noted', kind: 'intent', actor: 'user:1', source: 'http', requestId, originRequestId: undefined, notes: [] },
      { action: 'thing.unawaited', kind: 'intent', actor: 'user:1', source: 'http', requestId, originRequestId: undefined, notes: [] },
    ]);
  });

  it('an un-awaited @Audited call whose awaited inner call writes after the response: both events the system’s, the write in the inner one’s', async () => {
    const requestId = `nested-${Date.now()}`;
    const response = await t.request('/nested-late/unawaited-nested', {
      method: 'POST',
      json: { note: 'n5' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    await expect.poll(async () => (await t.rows()).some((row) => row.action === 'reminder.outer'), { timeout: 5000 }).toBe(true);
    await sleep(200); // nothing more arrives
    const rows = (await t.rows()).filter((row) => row.action !== 'thing.unawaited').map(attribution);
    const outer = rows.find((row) => row.action === 'reminder.outer')!;
    expect(outer.requestId).not.toBe(requestId);
    expect(rows.sort((a, b) => a.action.localeCompare(b.action))).toEqual([
      { action: 'reminder.inner', kind: 'intent', actor: 'system:null', source: 'system', requestId: outer.requestId, originRequestId: requestId, notes: ['n5-late'] },
      { action: 'reminder.outer', kind: 'intent', actor: 'system:null', source: 'system', requestId: outer.requestId, originRequestId: requestId, notes: [] },
    ]);
  });

  it('an un-awaited runAs that outlives its request: its own actor and source, with the request’s id as originRequestId', async () => {
    const requestId = `run-as-${Date.now()}`;
    const response = await t.request('/nested-late/unawaited-run-as', {
      method: 'POST',
      json: { note: 'n4' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    await expect.poll(async () => (await t.rows()).some((row) => row.action === 'mail.sent'), { timeout: 5000 }).toBe(true);
    await sleep(200); // nothing more arrives
    const rows = (await t.rows()).filter((row) => row.action !== 'thing.delegated').map(attribution);
    expect(rows.map(({ requestId: _id, ...row }) => row).sort((a, b) => a.action.localeCompare(b.action))).toEqual([
      { action: 'mail.sent', kind: 'intent', actor: 'service:mailer', source: 'job', originRequestId: requestId, notes: [] },
      { action: 'order.created', kind: 'change', actor: 'service:mailer', source: 'job', originRequestId: requestId, notes: ['n4-mail'] },
    ]);
  });

  it('an un-awaited @Audited provider call that writes after the response: not the request user’s', async () => {
    const requestId = `unawaited-${Date.now()}`;
    const response = await t.request('/nested-late/unawaited-call', {
      method: 'POST',
      json: { note: 'n2' },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    expect(response.status).toBe(201);
    // The response has been sent: the handler's event is stored, the call's write is still to come.
    expect((await t.rows()).map((row) => row.action)).toEqual(['thing.unawaited']);
    await expect.poll(async () => (await t.rows()).some((row) => notesOf(row).includes('n2-late')), { timeout: 5000 }).toBe(true);
    const late = (await t.rows()).find((row) => notesOf(row).includes('n2-late'))!;
    expect({ action: late.action, actor: `${late.actorType}:${late.actorId}`, source: late.source, requestId: late.requestId, originRequestId: origin(late) }).toEqual({
      action: 'reminder.created',
      actor: 'system:null',
      source: 'system',
      requestId: expect.not.stringMatching(requestId),
      originRequestId: requestId,
    });
  });
});
