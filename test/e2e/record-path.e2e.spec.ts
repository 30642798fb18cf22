import { APP_INTERCEPTOR } from '@nestjs/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, type AuditChange, type AuditLogEntity } from '../../lib/index.js';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { ExpressResponseController, FastifyReplyController, STREAMED_LINES } from '../app/raw-response.controller.js';
import { NestedOrderWriter, RecordPathController } from '../app/record-path.controller.js';
import { TransactionalInterceptor } from '../app/transactional.interceptor.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));
const ALICE = { authorization: 'Bearer alice-token' };

/** Every change any of `rows` records for one order. */
const changesOf = (rows: AuditLogEntity[], orderId: number): AuditChange[] =>
  rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'Order' && change.id === String(orderId));

describe.each(combos)('the record path on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      controllers: [RecordPathController, adapter === 'express' ? ExpressResponseController : FastifyReplyController],
      providers: [NestedOrderWriter, { provide: APP_INTERCEPTOR, useClass: TransactionalInterceptor }],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const journalRows = () => t.dataSource.getRepository(AuditJournalEntity).count();

  describe('@Res() handlers', () => {
    it('a 201 sent through the response object: one success intent claiming the handler’s insert', async () => {
      const response = await t.request('/raw/things', { method: 'POST', json: { note: 'raw-201' }, headers: ALICE });
      expect(response.status).toBe(201);
      const created = (await response.json()) as Order;
      expect(created.note).toBe('raw-201');

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['thing.created', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ error: null, actorId: '1', requestId: response.headers.get('x-request-id') });
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({
        entity: 'Order',
        id: String(created.id),
        operation: 'insert',
        fields: { note: { to: 'raw-201' }, status: { to: 'raw' } },
      });
    });

    it('a 404 sent through the response object: one failure intent with status 404', async () => {
      const response = await t.request('/raw/things/987654', { method: 'PATCH', json: { note: 'nobody' }, headers: ALICE });
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ message: 'Thing 987654 not found' });

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['thing.updated', 'intent', 'failure']]);
      expect(rows[0]!.error).toMatchObject({ status: 404 });
      expect(rows[0]!.changes).toEqual([]);
    });

    it('a body written in chunks, then ended: one success intent claiming the insert, stored by the time the body ends', async () => {
      const response = await t.request('/raw/things/stream', { method: 'POST', json: { note: 'raw-chunks' }, headers: ALICE });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(STREAMED_LINES.join(''));

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['thing.written', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ error: null, actorId: '1', requestId: response.headers.get('x-request-id') });
      const order = await orders().findOneByOrFail({ note: 'raw-chunks' });
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert' });
    });
  });

  describe('@Sse()', () => {
    it('an observable of three events: one success intent, stored by the time the stream ends, claiming what the stream changed', async () => {
      const response = await t.request('/record-path/events?note=sse-1', { headers: ALICE });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const body = await response.text();
      expect(body.match(/^data: /gm)).toHaveLength(3);

      // Read right after the client has the whole stream: no waiting.
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['thing.streamed', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ error: null, actorId: '1', requestId: response.headers.get('x-request-id') });
      const order = await orders().findOneByOrFail({ note: 'sse-1' });
      expect(order.status).toBe('streamed');
      // Saved before the first event, updated with the last: one net insert, with the final values.
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert', fields: { status: { to: 'streamed' } } });
    });
  });

  describe('an app-level transaction interceptor around the handler', () => {
    it('commits after the handler: one intent claiming the change, no fallback row', async () => {
      const response = await t.request('/record-path/tx/orders', { method: 'POST', json: { note: 'tx-commit' }, headers: ALICE });
      expect(response.status).toBe(201);
      const created = (await response.json()) as Order;
      expect(await orders().findOneBy({ id: created.id })).not.toBeNull();

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['order.created', 'intent', 'success']]);
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(created.id), operation: 'insert', fields: { note: { to: 'tx-commit' } } });
    });

    it('throws after the handler returned: a 500, a failure intent, and no row records the rolled-back change', async () => {
      const response = await t.request('/record-path/tx/orders/refused', { method: 'POST', json: { note: 'tx-refused' }, headers: ALICE });
      expect(response.status).toBe(500);
      expect(await orders().findOneBy({ note: 'tx-refused' })).toBeNull();

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['order.created', 'intent', 'failure']]);
      expect(rows[0]!.changes).toEqual([]);
      expect(JSON.stringify(rows)).not.toContain('tx-refused');
    });
  });

  describe('work left running after the response', () => {
    it('a timer’s write and log: attributed to system with the originating request id, never to the request’s user', async () => {
      const controller = t.app.get(RecordPathController);
      controller.lateErrors.length = 0;
      const response = await t.request('/record-path/late', { method: 'POST', json: { note: 'late-1' }, headers: ALICE });
      expect(response.status).toBe(201);
      const requestId = response.headers.get('x-request-id');
      expect(requestId).toBeTruthy();

      const atResponse = await t.rows();
      expect(atResponse.map((row) => [row.action, row.kind, row.outcome, row.actorId])).toEqual([['thing.scheduled', 'intent', 'success', '1']]);
      expect(atResponse[0]!.changes).toEqual([]);

      await expect.poll(async () => (await t.rows()).length, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
      await new Promise((resolve) => setTimeout(resolve, 200)); // nothing more arrives
      expect(controller.lateErrors).toEqual([]);
      const order = await orders().findOneByOrFail({ note: 'late-1' });
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind]).sort()).toEqual([
        ['order.created', 'change'],
        ['reminder.sent', 'intent'],
        ['thing.scheduled', 'intent'],
      ]);
      const change = rows.find((row) => row.action === 'order.created')!;
      expect(change).toMatchObject({ actorType: 'system', actorId: null, source: 'system', targetId: String(order.id) });
      expect(change.context).toMatchObject({ originRequestId: requestId });
      const logged = rows.find((row) => row.action === 'reminder.sent')!;
      expect(logged).toMatchObject({ actorType: 'system', actorId: null, source: 'system' });
      expect(logged.context).toMatchObject({ note: 'late-1', originRequestId: requestId });
    });
  });

  describe('exactly once under concurrency', () => {
    it('200 concurrent @Audited PATCHes, each in its own explicit transaction: 200 intents, each with its own change, no fallback, empty journal', async () => {
      const seeded = await t.seed(() => orders().save(Array.from({ length: 200 }, (_, i) => orders().create({ status: 'new', total: i }))));
      const responses = await Promise.all(
        seeded.map(async (order, i) => {
          const response = await t.request(`/record-path/orders/${order.id}/note`, {
            method: 'PATCH',
            json: { note: `n-${i}` },
            headers: { authorization: `Bearer user-${i % 20}`, 'x-request-id': `conc-${i}` },
          });
          return response.status;
        }),
      );
      expect(responses.filter((status) => status !== 200)).toEqual([]);

      const rows = await t.rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows).toHaveLength(200);
      const wrong: string[] = [];
      seeded.forEach((order, i) => {
        const own = rows.filter((row) => row.requestId === `conc-${i}`);
        const expected = [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: `n-${i}` } } }];
        if (own.length !== 1) wrong.push(`conc-${i}: ${own.length} rows`);
        else if (own[0]!.action !== 'order.noted' || own[0]!.targetId !== String(order.id)) wrong.push(`conc-${i}: ${own[0]!.action} ${own[0]!.targetId}`);
        else if (JSON.stringify(own[0]!.changes) !== JSON.stringify(expected)) wrong.push(`conc-${i}: ${JSON.stringify(own[0]!.changes)}`);
        else if (own[0]!.actorId !== String(1000 + (i % 20))) wrong.push(`conc-${i}: actor ${own[0]!.actorId}`);
      });
      expect(wrong).toEqual([]);
      expect(await journalRows()).toBe(0);
    });
  });
});

describe.each(databases())('records inside the caller’s transaction on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [RecordPathController], providers: [NestedOrderWriter] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);

  describe('a nested @Audited provider method', () => {
    it('inside an undecorated route’s transaction: one intent claiming its change, no fallback row', async () => {
      const response = await t.request('/record-path/nested', { method: 'POST', json: { note: 'nested-1' }, headers: ALICE });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['thing.nested', 'intent', 'success']]);
      expect(rows[0]).toMatchObject({ actorId: '1', source: 'http', targetId: String(id) });
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(id), operation: 'insert', fields: { note: { to: 'nested-1' } } });
    });

    it('when the caller’s transaction rolls back after it returned: no row records the change', async () => {
      const response = await t.request('/record-path/nested', { method: 'POST', json: { note: 'nested-rb', rollback: true }, headers: ALICE });
      expect(response.status).toBe(409);
      expect(await orders().findOneBy({ note: 'nested-rb' })).toBeNull();

      const rows = await t.rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
      expect(JSON.stringify(rows)).not.toContain('nested-rb');
    });
  });

  describe('runAs inside the caller’s transaction', () => {
    it('its change is attributed to the runAs actor and source job', async () => {
      const response = await t.request('/record-path/run-as', { method: 'POST', json: { note: 'run-as-1' }, headers: ALICE });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind])).toEqual([['order.created', 'change']]);
      expect(rows[0]).toMatchObject({ actorType: 'service', actorId: 'importer', source: 'job', targetId: String(id) });
      expect(changesOf(rows, id)).toHaveLength(1);
    });

    it('when the caller’s transaction rolls back after runAs returned: no row records the change', async () => {
      const response = await t.request('/record-path/run-as', { method: 'POST', json: { note: 'run-as-rb', rollback: true }, headers: ALICE });
      expect(response.status).toBe(409);
      expect(await orders().findOneBy({ note: 'run-as-rb' })).toBeNull();

      const rows = await t.rows();
      expect(rows.flatMap((row) => row.changes ?? [])).toEqual([]);
      expect(JSON.stringify(rows)).not.toContain('run-as-rb');
    });
  });

  describe('audit.log() outside any unit of work, inside a transaction', () => {
    it('committed: one intent claiming the insert, no fallback row', async () => {
      const order = await t.dataSource.transaction(async (m) => {
        const created = await m.save(Order, m.create(Order, { status: 'imported', note: 'log-tx-1' }));
        await t.audit.log({ action: 'order.imported', target: created });
        return created;
      });

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['order.imported', 'intent', 'success']]);
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert', fields: { note: { to: 'log-tx-1' } } });
    });

    it('rolled back after the log: no row at all', async () => {
      await expect(
        t.dataSource.transaction(async (m) => {
          const created = await m.save(Order, m.create(Order, { status: 'imported', note: 'log-tx-rb' }));
          await t.audit.log({ action: 'order.imported', target: created });
          throw new Error('import aborted');
        }),
      ).rejects.toThrow('import aborted');
      expect(await orders().findOneBy({ note: 'log-tx-rb' })).toBeNull();
      expect(await t.rows()).toEqual([]);
    });

    it('with the manager of a manually started transaction, committed: one intent claiming the insert, no fallback row', async () => {
      const runner = t.dataSource.createQueryRunner();
      await runner.connect();
      let order: Order;
      try {
        await runner.startTransaction();
        order = await runner.manager.save(Order, runner.manager.create(Order, { status: 'imported', note: 'log-qr-1' }));
        await t.audit.log({ action: 'order.imported', target: order }, { manager: runner.manager });
        await runner.commitTransaction();
      } finally {
        await runner.release();
      }

      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['order.imported', 'intent', 'success']]);
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'Order', id: String(order.id), operation: 'insert', fields: { note: { to: 'log-qr-1' } } });
    });

    it('with the manager of a manually started transaction, rolled back: no row at all', async () => {
      const runner = t.dataSource.createQueryRunner();
      await runner.connect();
      try {
        await runner.startTransaction();
        const order = await runner.manager.save(Order, runner.manager.create(Order, { status: 'imported', note: 'log-qr-rb' }));
        await t.audit.log({ action: 'order.imported', target: order }, { manager: runner.manager });
        await runner.rollbackTransaction();
      } finally {
        await runner.release();
      }
      expect(await orders().findOneBy({ note: 'log-qr-rb' })).toBeNull();
      expect(await t.rows()).toEqual([]);
    });
  });
});
