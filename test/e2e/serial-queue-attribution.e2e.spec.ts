import { AsyncResource } from 'node:async_hooks';
import { Body, Controller, Injectable, Post, UseGuards, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, from, Subject, type Subscription } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { notesOf } from '../support/changed-notes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Item {
  note: string;
  /** How long processing the item takes before it saves. */
  delay: number;
}

/**
 * Two common ways to process items pushed by requests one at a time, both set up by the
 * app, not by a request: an RxJS `Subject` piped through `concatMap` (subscribed at
 * bootstrap), and a serial promise queue in the style of p-queue / async.queue
 * (concurrency 1: the next item starts when the previous one finishes).
 *
 * Each item runs in the context of the item that started the chain or of the one before
 * it; unbound, an item pushed by one request is claimed by another request or stored as
 * its late work (a documented limit, docs/capture-rules.md, "Work handed to another
 * request's code"). Both bind each item's work with AsyncResource.bind() where it is
 * pushed, as the docs say: it runs in the context of the request that pushed it.
 */
@Injectable()
class SerialProcessing implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly subject = new Subject<() => Promise<void>>();
  private subscription?: Subscription;
  private readonly pending: Array<() => Promise<void>> = [];
  private running = false;

  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  onApplicationBootstrap(): void {
    this.subscription = this.subject.pipe(concatMap((run) => from(run()))).subscribe();
  }
  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  /** The RxJS stream: runs the items in order, one at a time. */
  next(item: Item): void {
    this.subject.next(AsyncResource.bind(() => this.process(item)));
  }

  /** The serial queue: runs the items in order, one at a time. */
  enqueue(item: Item): void {
    this.pending.push(AsyncResource.bind(() => this.process(item)));
    if (this.running) return;
    this.running = true;
    void (async () => {
      for (let next = this.pending.shift(); next; next = this.pending.shift()) await next();
      this.running = false;
    })();
  }

  private async process(item: Item): Promise<void> {
    await sleep(item.delay);
    await this.orders.save(this.orders.create({ status: 'processed', note: item.note }));
  }
}

@Controller('serial')
@UseGuards(TokenGuard)
class SerialController {
  constructor(private readonly processing: SerialProcessing) {}

  /** Pushes an item and answers at once. */
  @Post('push')
  @Audited('item.pushed')
  push(@Body() body: Item & { via: 'rxjs' | 'queue' }): { ok: true } {
    this.dispatch(body);
    return { ok: true };
  }

  /** Pushes an item, then takes its time answering (a slow request). */
  @Post('push-slow')
  @Audited('item.pushed-slowly')
  async pushSlow(@Body() body: Item & { via: 'rxjs' | 'queue' }): Promise<{ ok: true }> {
    this.dispatch(body);
    await sleep(600);
    return { ok: true };
  }

  private dispatch(body: Item & { via: 'rxjs' | 'queue' }): void {
    const item = { note: body.note, delay: body.delay };
    if (body.via === 'rxjs') this.processing.next(item);
    else this.processing.enqueue(item);
  }
}

const origin = (row: AuditLogEntity) => (row.context as Record<string, unknown> | null)?.['originRequestId'];
const who = (row: AuditLogEntity) => ({
  action: row.action,
  actor: `${row.actorType}:${row.actorId}`,
  requestId: row.requestId,
  originRequestId: origin(row),
  notes: notesOf(row),
});

describe.each(databases())('items a request pushes, bound to its context, to a serial stream or queue set up by the app, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [SerialController], providers: [SerialProcessing] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const push = (path: string, user: string, requestId: string, body: Record<string, unknown>) =>
    t.request(path, { method: 'POST', json: body, headers: { authorization: `Bearer ${user}`, 'x-request-id': requestId } });

  it.each(['rxjs', 'queue'] as const)(
    '%s: bob’s item, processed while alice’s slow request is still running, is bob’s request’s late work, not alice’s',
    async (via) => {
      const tag = `${via}-${Date.now()}`;
      // Alice pushes an item that takes 200 ms, then her request takes 600 ms to answer.
      const alice = push('/serial/push-slow', 'alice-token', `alice-${tag}`, { note: `alice-${tag}`, delay: 200, via });
      await sleep(50);
      // Bob pushes his item while alice's is being processed; his request answers at once.
      const bob = await push('/serial/push', 'bob-token', `bob-${tag}`, { note: `bob-${tag}`, delay: 10, via });
      expect(bob.status).toBe(201);
      expect((await alice).status).toBe(201);
      // Bob's item is stored once processed; then a moment for anything more to arrive.
      await expect.poll(async () => (await t.rows()).some((row) => notesOf(row).includes(`bob-${tag}`)), { timeout: 5_000 }).toBe(true);
      await sleep(300);

      const rows = await t.rows();
      const bobsItem = rows.filter((row) => notesOf(row).includes(`bob-${tag}`)).map(who);
      // Bob's item: bob's (his request's own event or a change event of his request), or the
      // system's — but never alice's, and never under alice's request id.
      expect(bobsItem).toHaveLength(1);
      const { actor, requestId, originRequestId, action } = bobsItem[0]!;
      expect({ action, actor, requestId, originRequestId }).not.toMatchObject({ actor: 'user:1' });
      expect({ action, actor, requestId, originRequestId }).not.toMatchObject({ requestId: `alice-${tag}` });
      expect({ action, actor, requestId, originRequestId }).not.toMatchObject({ originRequestId: `alice-${tag}` });
      // It ran after bob's request had answered: late work of bob's request.
      expect({ actor, requestId, originRequestId }).toEqual({ actor: 'system:null', requestId: null, originRequestId: `bob-${tag}` });
      // Alice's item ran while her request was running: in her request's event.
      const alicesItem = rows.filter((row) => notesOf(row).includes(`alice-${tag}`)).map(who);
      expect(alicesItem).toEqual([{ action: 'item.pushed-slowly', actor: 'user:1', requestId: `alice-${tag}`, originRequestId: undefined, notes: [`alice-${tag}`] }]);
    },
    20_000,
  );

  it.each(['rxjs', 'queue'] as const)(
    '%s: 30 concurrent pushes by different users: no item is stored with another request’s id as originRequestId',
    async (via) => {
      const tag = `${via}-${Date.now()}`;
      const sent = Array.from({ length: 30 }, (_, i) => ({ user: `user-${i}`, requestId: `r${i}-${tag}`, note: `n${i}-${tag}` }));
      const statuses = await Promise.all(sent.map(async (s) => (await push('/serial/push', s.user, s.requestId, { note: s.note, delay: 5, via })).status));
      expect(statuses.every((status) => status === 201)).toBe(true);
      await expect.poll(async () => (await t.rows()).filter((row) => row.kind === 'change').length, { timeout: 10_000 }).toBeGreaterThanOrEqual(29);
      // Every item is stored once processed; then a moment for anything more to arrive.
      const unstored = async () => {
        const notes = new Set((await t.rows()).flatMap(notesOf));
        return sent.filter((s) => !notes.has(s.note)).map((s) => s.note);
      };
      await expect.poll(unstored, { timeout: 10_000 }).toEqual([]);
      await sleep(300);
      const rows = await t.rows();
      const wrong = sent.flatMap((s) =>
        rows
          .filter((row) => notesOf(row).includes(s.note))
          .map(who)
          .filter((row) => (row.requestId !== s.requestId && row.requestId?.startsWith('r')) || (row.originRequestId !== undefined && row.originRequestId !== s.requestId))
          .map((row) => `${s.note} pushed by ${s.requestId}: stored as ${JSON.stringify(row)}`),
      );
      expect(wrong.slice(0, 3)).toEqual([]);
    },
    30_000,
  );
});
