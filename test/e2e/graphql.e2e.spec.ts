import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { OrderArchiver } from '../app/jobs.js';
import { Order } from '../app/order.entity.js';
import { GqlAdminGuard, graphqlModule, GqlTokenGuard, OrdersResolver } from '../app/orders.resolver.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface GraphqlResponse {
  data?: Record<string, unknown> | null;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, unknown> }>;
}

const combos = databases()
  .filter((kind) => kind !== 'mariadb')
  .flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('GraphQL resolvers (Apollo) on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, imports: [graphqlModule()], providers: [OrdersResolver, GqlTokenGuard, GqlAdminGuard, OrderArchiver] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const graphql = async (query: string, headers: Record<string, string> = {}) => {
    const response = await t.request('/graphql', { method: 'POST', json: { query }, headers });
    return { response, body: (await response.json()) as GraphqlResponse };
  };

  it('an @Audited mutation: one intent row with source graphql, the guard’s actor, the operation and its changes', async () => {
    const order = await t.seed(() => orders().save({ status: 'new', total: 10 }));
    const { response, body } = await graphql(`mutation PayLater { updateOrder(id: ${order.id}, status: "later") { id status } }`, {
      authorization: 'Bearer alice-token',
      'user-agent': 'gql-test/1.0',
      'x-request-id': 'gql-req-1',
    });
    expect(response.status).toBe(200);
    expect(body).toEqual({ data: { updateOrder: { id: order.id, status: 'later' } } });
    expect(response.headers.get('x-request-id')).toBe('gql-req-1');

    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.action).toBe('order.updated');
    expect(row.kind).toBe('intent');
    expect(row.outcome).toBe('success');
    expect(row.source).toBe('graphql');
    expect(row.actorType).toBe('user');
    expect(row.actorId).toBe('1');
    expect(row.actorDisplay).toBe('alice@example.com');
    expect(row.method).toBe('MUTATION');
    expect(row.route).toBe('Mutation.updateOrder');
    expect(row.path).toBe('PayLater');
    expect(row.ip).toBe('127.0.0.1');
    expect(row.userAgent).toBe('gql-test/1.0');
    expect(row.requestId).toBe('gql-req-1');
    expect(row.targetType).toBe('order');
    expect(row.targetId).toBe(String(order.id));
    expect(row.error).toBeNull();
    expect(row.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'later' } } }]);
  });
  it('a mutation a guard turns away: one failure row with the status; the client gets the guard’s error', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid', total: 5 }));
    const { response, body } = await graphql(`mutation Refund { refundOrder(id: ${order.id}) { id } }`, { authorization: 'Bearer bob-token' });
    expect(response.status).toBe(200);
    expect(body.data).toBeNull();
    expect(body.errors![0]!.message).toBe('Admins only');

    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.refunded',
      outcome: 'failure',
      kind: 'intent',
      source: 'graphql',
      actorId: '2',
      method: 'MUTATION',
      route: 'Mutation.refundOrder',
      path: 'Refund',
      requestId: response.headers.get('x-request-id'),
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'ForbiddenException', status: 403, message: 'Admins only' });
    expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('paid');

    // The admin gets through: one success row, no failure row.
    await t.clearAudit();
    await graphql(`mutation { refundOrder(id: ${order.id}) { id } }`, { authorization: 'Bearer alice-token' });
    expect((await t.rows()).map((row) => [row.action, row.outcome])).toEqual([['order.refunded', 'success']]);
  });

  it('a resolver that throws: one failure row; the client gets the GraphQL error as usual', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid', total: 5 }));
    const { response, body } = await graphql(`mutation { payOrder(id: ${order.id}) { id } }`, { authorization: 'Bearer bob-token' });
    expect(response.status).toBe(200);
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]!.message).toBe(`Order ${order.id} is already paid`);
    expect(body.errors![0]!.path).toEqual(['payOrder']);
    expect(body.errors![0]!.extensions).toMatchObject({
      status: 409,
      originalError: { message: `Order ${order.id} is already paid`, error: 'Conflict', statusCode: 409 },
    });

    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.paid',
      outcome: 'failure',
      kind: 'intent',
      source: 'graphql',
      actorId: '2',
      method: 'MUTATION',
      route: 'Mutation.payOrder',
      path: null,
      requestId: response.headers.get('x-request-id'),
      changes: [],
    });
    expect(rows[0]!.error).toEqual({ name: 'ConflictException', status: 409, message: `Order ${order.id} is already paid` });
  });

  it('two audited mutations in one document: two rows, each claiming only its own changes', async () => {
    const [a, b] = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }]));
    const { body, response } = await graphql(
      `mutation Both { first: updateOrder(id: ${a!.id}, status: "one") { id } second: updateOrder(id: ${b!.id}, status: "two") { id } }`,
      { authorization: 'Bearer alice-token' },
    );
    expect(body.errors).toBeUndefined();
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toMatch(UUID_V7);
    for (const [row, order, status] of [[rows[0]!, a!, 'one'], [rows[1]!, b!, 'two']] as const) {
      expect(row).toMatchObject({ action: 'order.updated', kind: 'intent', source: 'graphql', actorId: '1', path: 'Both', requestId });
      expect(row.targetId).toBe(String(order.id));
      expect(row.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: status } } }]);
    }
  });

  it('an @Audited service method called from a resolver keeps source graphql; each event has its own changes', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    const { body, response } = await graphql(`mutation { closeOrder(id: ${order.id}) }`, { authorization: 'Bearer alice-token' });
    expect(body).toEqual({ data: { closeOrder: true } });
    const rows = await t.rows();
    expect(rows).toHaveLength(2);
    const byAction = Object.fromEntries(rows.map((row) => [row.action, row]));
    const requestId = response.headers.get('x-request-id');
    expect(byAction['order.archived']).toMatchObject({ kind: 'intent', source: 'graphql', actorId: '1', requestId, method: 'MUTATION', route: 'Mutation.closeOrder' });
    expect(byAction['order.archived']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'paid', to: 'archived' } } },
    ]);
    expect(byAction['order.closed']).toMatchObject({ kind: 'intent', source: 'graphql', actorId: '1', requestId, route: 'Mutation.closeOrder' });
    expect(byAction['order.closed']!.changes).toEqual([
      { entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'closing' } } },
    ]);
  });

  it('an unaudited mutation: one fallback change row attributed to graphql, with the operation and actor', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const { body } = await graphql(`mutation Note { noteOrder(id: ${order.id}, note: "hi") { note } }`, { authorization: 'Bearer bob-token' });
    expect(body).toEqual({ data: { noteOrder: { note: 'hi' } } });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'order.updated',
      kind: 'change',
      source: 'graphql',
      actorId: '2',
      method: 'MUTATION',
      route: 'Mutation.noteOrder',
      path: 'Note',
      targetType: 'Order',
      targetId: String(order.id),
    });
    expect(rows[0]!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { note: { from: null, to: 'hi' } } }]);
  });

  it('a query writes nothing; an anonymous mutation is recorded as anonymous', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    const read = await graphql(`query { order(id: ${order.id}) { status } }`);
    expect(read.body).toEqual({ data: { order: { status: 'new' } } });
    expect(await t.rows()).toHaveLength(0);
    await graphql(`mutation { updateOrder(id: ${order.id}, status: "x") { id } }`);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ source: 'graphql', actorType: 'anonymous', actorId: null, actorDisplay: null });
  });

  it('concurrent requests from different users: every row names its own actor and request', async () => {
    const list = await t.seed(() => orders().save(Array.from({ length: 20 }, () => ({ status: 'new' }))));
    const results = await Promise.all(
      list.map(async (order, i) => {
        const token = i % 2 ? 'alice-token' : 'bob-token';
        const { response } = await graphql(`mutation { updateOrder(id: ${order.id}, status: "s${i}") { id } }`, { authorization: `Bearer ${token}` });
        return { order, actorId: i % 2 ? '1' : '2', requestId: response.headers.get('x-request-id') };
      }),
    );
    const rows = await t.rows();
    expect(rows).toHaveLength(20);
    for (const { order, actorId, requestId } of results) {
      const row = rows.find((candidate) => candidate.targetId === String(order.id));
      expect(row).toMatchObject({ actorId, requestId, source: 'graphql' });
      expect(row!.changes).toHaveLength(1);
    }
  });
});

describe.each(ADAPTERS)('GraphQL with recordBody on sqlite over %s', (adapter) => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({
      db: await createTestDatabase('sqlite'),
      adapter,
      audit: { recordBody: true },
      imports: [graphqlModule()],
      providers: [OrdersResolver, GqlTokenGuard, GqlAdminGuard, OrderArchiver],
    });
  });
  afterAll(() => t?.close());
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);
  const graphql = (query: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.request('/graphql', { method: 'POST', json: { query, ...(variables ? { variables } : {}) }, headers });

  it('stores the operation and its variables, redacted, never the query text with its literals', async () => {
    const order = await t.seed(() => orders().save({ status: 'new' }));
    await graphql(`mutation Rename { updateOrder(id: ${order.id}, status: "hunter2-literal") { id } }`, undefined, { authorization: 'Bearer alice-token' });
    await graphql(
      'mutation Update($id: Int!, $password: String!) { updateOrder(id: $id, status: $password) { id } }',
      { id: order.id, password: 'pw-in-variable' },
      { authorization: 'Bearer alice-token' },
    );
    const rows = await t.rows();
    expect(rows.map((row) => row.context)).toEqual([
      { body: { operationType: 'mutation', operationName: 'Rename' } },
      { body: { operationType: 'mutation', operationName: 'Update', variables: { id: order.id, password: '[REDACTED]' } } },
    ]);
    expect(JSON.stringify(rows.map((row) => row.context))).not.toMatch(/hunter2-literal|pw-in-variable|updateOrder/);
  });

  it('an @Audited service method called from a resolver: the same operation, never the query text', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    await graphql(`mutation Close { closeOrder(id: ${order.id}) }`, undefined, { authorization: 'Bearer alice-token' });
    const rows = await t.rows();
    expect(rows.map((row) => row.action).sort()).toEqual(['order.archived', 'order.closed']);
    for (const row of rows) expect(row.context).toEqual({ body: { operationType: 'mutation', operationName: 'Close' } });
  });

  it('a call a guard turns away: the same, never the query text', async () => {
    const order = await t.seed(() => orders().save({ status: 'paid' }));
    await graphql(`mutation { refundOrder(id: ${order.id}) { id } }`, undefined, { authorization: 'Bearer bob-token' });
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ action: 'order.refunded', outcome: 'failure' });
    expect(rows[0]!.context).toEqual({ body: { operationType: 'mutation' } });
  });
});
