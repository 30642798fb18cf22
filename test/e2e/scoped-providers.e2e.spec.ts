import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { ContextIdFactory } from '@nestjs/core';
import { NoteSweeper, SCOPED_NOTE_PROVIDERS, ScopedNotesController, TenantContexts } from '../app/scoped-notes.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const SCOPES = [
  ['request', 'note.request-scoped'],
  ['transient', 'note.transient'],
  ['implicit', 'note.implicitly-scoped'],
  ['durable', 'note.durable'],
] as const;

describe.each(databases())('@Audited on providers of any scope on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    // Durable providers: one context per tenant (a process-wide setting of Nest's).
    ContextIdFactory.apply(new TenantContexts());
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [ScopedNotesController], providers: SCOPED_NOTE_PROVIDERS });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    ContextIdFactory.apply({ attach: () => undefined });
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const setNote = (scope: string, id: number, token: string, note: string, delay = 0) =>
    t.request(`/scoped/${scope}/${id}`, { method: 'POST', json: { note, delay }, headers: { authorization: `Bearer ${token}`, 'x-tenant': 'acme' } });

  it.each(SCOPES)('a %s provider’s @Audited method called from a controller: its intent row, with the request’s actor', async (scope, action) => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const response = await setNote(scope, order.id, 'alice-token', `by alice via ${scope}`);
    expect(response.status).toBe(201);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action, kind: 'intent', outcome: 'success', source: 'http', actorType: 'user', actorId: '1' });
    expect(rows[0]!.requestId).toBe(response.headers.get('x-request-id'));
    expect(rows[0]!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: `by alice via ${scope}` } } },
    ]);
  });

  it.each(SCOPES)('the same %s method in parallel requests: each row has its own actor and its own change', async (scope, action) => {
    const [first, second] = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    // Both calls read, then wait, then write: they overlap.
    const responses = await Promise.all([
      setNote(scope, first!.id, 'alice-token', 'alice', 150),
      setNote(scope, second!.id, 'bob-token', 'bob', 150),
    ]);
    expect(responses.map((response) => response.status)).toEqual([201, 201]);
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const byActor = Object.fromEntries(rows.map((row) => [row.actorId, row]));
    expect(byActor['1']).toMatchObject({ action, kind: 'intent', requestId: responses[0]!.headers.get('x-request-id') });
    expect(byActor['1']!.changes).toEqual([{ entity: 'Order', id: String(first!.id), operation: 'update', fields: { note: { from: null, to: 'alice' } } }]);
    expect(byActor['2']).toMatchObject({ action, kind: 'intent', requestId: responses[1]!.headers.get('x-request-id') });
    expect(byActor['2']!.changes).toEqual([{ entity: 'Order', id: String(second!.id), operation: 'update', fields: { note: { from: null, to: 'bob' } } }]);
  });

  it('a transient provider used by a singleton, called outside any request: one intent row, source job, actor system', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await t.app.get(NoteSweeper).sweep(order.id);
    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.source, row.actorType])).toEqual([['note.transient', 'intent', 'job', 'system']]);
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'swept' } } }]);
  });
});
