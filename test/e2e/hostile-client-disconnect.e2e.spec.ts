import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { SlowMiddlewareModule, slowMiddlewareHold, SlowResController, slowResHold, SlowRouteController } from '../app/hostile-slow-middleware.js';
import { Order } from '../app/order.entity.js';
import { clientGone, type RequestHold } from '../app/request-hold.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { polled } from '../support/within.js';

// Express only: Fastify drops a request whose client went away before routing (nothing runs, nothing is owed).
const combos = databases().map((db) => [db, 'express'] as const);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A POST of a new order to `path` as alice, whose client gives up while `hold` holds the
 * request: the request goes on once the server has seen its client go. Waits until it has
 * committed the order; returns the order and a reader of the rows recorded for the request.
 */
async function abandoned(t: TestApp, hold: RequestHold, path: string, note: string, requestId: string) {
  hold.arm();
  const client = new AbortController();
  const answer = t
    .request(path, { method: 'POST', json: { note }, headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId }, signal: client.signal })
    .then(
      (response) => response.status,
      () => 'aborted',
    );
  const response = await hold.reached;
  client.abort();
  expect(await answer, 'the client gave up before any answer').toBe('aborted');
  await clientGone(response);
  hold.release();
  const orders = t.dataSource.getRepository(Order);
  const order = await polled(() => orders.findOneBy({ note }), Boolean, 15_000);
  expect(order, 'the handler ran and committed').not.toBeNull();
  const recorded = async () => (await t.rows()).filter((row) => row.requestId === requestId || row.context?.['originRequestId'] === requestId);
  return { order: order!, recorded };
}

/**
 * A client that gives up while the request is still in a middleware: the request goes on
 * (the framework routes it, the handler runs and commits), so its `@Audited` event must
 * be recorded exactly once, with the request's actor, claiming the handler's change.
 */
describe.each(combos)('a client that disconnects before the guards run, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [SlowRouteController], imports: [SlowMiddlewareModule] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the handler still runs and commits: one intent by the request’s user claiming the change, no system fallback', async () => {
    const requestId = `hostile-disconnect-${kind}-${adapter}`;
    // Abort while the slow middleware holds the request (before any guard has run).
    const { order, recorded } = await abandoned(t, slowMiddlewareHold, '/hostile/slow', `gone-${kind}-${adapter}`, requestId);
    // Its record once stored (in the background: its client is gone), then a while more for anything stored twice or apart.
    await polled(recorded, (rows) => rows.length > 0, 15_000);
    await sleep(300);

    const rows = await recorded();
    expect(rows.map((row) => [row.action, row.kind, row.actorType, row.actorId, row.source])).toEqual([['thing.slow', 'intent', 'user', '1', 'http']]);
    expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(order.id), operation: 'insert' })]);
  });
});

/**
 * A client that gives up while an `@Res()` handler works: the handler saves, sees its client
 * gone and returns without ending the response. Nothing will end it, so the unit is settled
 * once its handler is done — not a minute later by the abandoned-request timer.
 */
describe.each(databases().flatMap((db) => [[db, 'express'] as const, [db, 'fastify'] as const]))(
  'a client that disconnects during an @Res() handler that then never answers, on %s over %s',
  (kind, adapter) => {
    let db: TestDatabase;
    let t: TestApp;

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      t = await createTestApp({ db, adapter, controllers: [SlowResController] });
    });
    afterAll(async () => {
      await t?.close();
      await db?.drop();
    });

    it('its intent is stored within seconds of the handler’s end, by the request’s user, claiming the change', async () => {
      const requestId = `hostile-disconnect-res-${kind}-${adapter}`;
      // Abort while the handler works (before it saves).
      const { order, recorded } = await abandoned(t, slowResHold, '/hostile/slow-res', `gone-res-${kind}-${adapter}`, requestId);
      const committedAt = Date.now();
      await polled(recorded, (rows) => rows.length > 0, 5_000);
      expect(Date.now() - committedAt, 'stored within 5 s of the commit').toBeLessThan(5_000);
      await sleep(300);

      const rows = await recorded();
      expect(rows.map((row) => [row.action, row.outcome, row.kind, row.actorType, row.actorId, row.source])).toEqual([['thing.slow-res', 'success', 'intent', 'user', '1', 'http']]);
      expect(rows[0]!.changes).toEqual([expect.objectContaining({ entity: 'Order', id: String(order.id), operation: 'insert' })]);
    });
  },
);
