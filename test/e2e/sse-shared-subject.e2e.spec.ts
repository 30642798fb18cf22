import { AsyncResource } from 'node:async_hooks';
import { Body, Controller, Injectable, Post, Req, Sse, UseGuards, type MessageEvent } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, Subject, take, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { notesOf } from '../support/changed-notes.js';

// An RxJS Subject calls its subscribers inside next(): an operator of a stream built on a
// shared Subject runs in the context of the request that called next(), and without a
// binding its write is claimed by that request (a documented limit, docs/capture-rules.md,
// "Work handed to another request's code"). Bound with AsyncResource.bind() where the
// stream is built, as the docs say, it is the stream's request's.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The app's notification bus (a singleton Subject, as in Nest's SSE examples). */
@Injectable()
class Bus {
  readonly notes = new Subject<string>();
}

@Controller('feed')
@UseGuards(TokenGuard)
class FeedController {
  constructor(
    private readonly bus: Bus,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
  ) {}

  /**
   * A user's live feed: each notification delivered to them is marked as seen by them. The
   * operator is bound to this request's context: it runs inside the publisher's next().
   */
  @Sse()
  @Audited('feed.streamed')
  feed(@Req() request: { user?: { id: number } }): Observable<MessageEvent> {
    return this.bus.notes.pipe(
      take(1),
      concatMap(
        AsyncResource.bind(async (note: string) => {
          await this.orders.save(this.orders.create({ status: 'seen', note: `seen-by-${request.user?.id}:${note}` }));
          return { data: note };
        }),
      ),
    );
  }

  /** Another user publishes a notification. */
  @Post('publish')
  @Audited('feed.published')
  async publish(@Body() body: { note: string }): Promise<{ ok: true }> {
    this.bus.notes.next(body.note);
    await sleep(100);
    return { ok: true };
  }
}


describe.each(databases())('an SSE stream fed by a shared Subject, its operator bound to the stream’s request, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [FeedController], providers: [Bus] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  it('what alice’s stream writes is in alice’s event, not in the event of bob, who published', async () => {
    const tag = String(Date.now());
    const feed = await t.request('/feed', { headers: { authorization: 'Bearer alice-token', 'x-request-id': `alice-${tag}` } });
    expect(feed.status).toBe(200);
    const body = feed.text(); // ends with the stream (one notification)
    await sleep(100);
    const publish = await t.request('/feed/publish', { method: 'POST', json: { note: tag }, headers: { authorization: 'Bearer bob-token', 'x-request-id': `bob-${tag}` } });
    expect(publish.status).toBe(201);
    expect(await body).toContain(tag);
    await sleep(200);

    const rows = await t.rows();
    const summary = rows
      .map((row) => ({ action: row.action, actor: `${row.actorType}:${row.actorId}`, requestId: row.requestId, notes: notesOf(row) }))
      .sort((a, b) => a.action.localeCompare(b.action));
    expect(summary).toEqual([
      { action: 'feed.published', actor: 'user:2', requestId: `bob-${tag}`, notes: [] },
      { action: 'feed.streamed', actor: 'user:1', requestId: `alice-${tag}`, notes: [`seen-by-1:${tag}`] },
    ]);
  });
});
