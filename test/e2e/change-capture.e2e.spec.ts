import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Customer } from '../app/customer.entity.js';
import { Order } from '../app/order.entity.js';
import { Session, User } from '../app/user.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const EXPIRER = { type: 'system', id: 'expirer' } as const;

describe.each(databases())('change capture on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { maxCriteriaRows: 5 } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const orders = () => t.dataSource.getRepository(Order);
  const users = () => t.dataSource.getRepository(User);
  const seedOrder = (values: Partial<Order> = {}) => t.seed(() => orders().save({ status: 'new', total: 10, ...values }));
  const job = <T>(fn: () => Promise<T>) => t.audit.runAs(EXPIRER, fn);
  /** What a reviewer reads: action, kind and changes of each row, oldest first. */
  const summary = (rows: AuditLogEntity[]) => rows.map((row) => ({ action: row.action, kind: row.kind, changes: row.changes }));

  describe('claiming', () => {
    it('a decorated handler claims its change: one intent row, no fallback', async () => {
      const order = await seedOrder();
      const response = await t.request(`/orders/${order.id}`, { method: 'PATCH', json: { status: 'paid' }, headers: { authorization: 'Bearer alice-token' } });
      expect(response.status).toBe(200);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'order.updated', kind: 'intent', outcome: 'success' });
      expect(rows[0]!.changes).toEqual([
        { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'paid' } } },
      ]);
    });

    it('an undecorated route leaves one fallback row with the request attribution', async () => {
      const order = await seedOrder();
      const response = await t.request(`/capture/orders/${order.id}`, {
        method: 'PATCH',
        json: { status: 'paid' },
        headers: { authorization: 'Bearer bob-token', 'user-agent': 'ua-test' },
      });
      expect(response.status).toBe(200);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        action: 'order.updated',
        kind: 'change',
        outcome: 'success',
        actorType: 'user',
        actorId: '2',
        actorDisplay: 'bob@example.com',
        source: 'http',
        ip: '127.0.0.1',
        userAgent: 'ua-test',
        method: 'PATCH',
        route: '/capture/orders/:id',
        requestId: response.headers.get('x-request-id'),
        targetType: 'Order',
        targetId: String(order.id),
      });
      expect(rows[0]!.changes).toEqual([
        { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'paid' } } },
      ]);
    });

    it('a decorated handler whose transaction rolls back: one failure row, no changes, order unchanged', async () => {
      const order = await seedOrder();
      const response = await t.request(`/capture/orders/${order.id}/pay-in-transaction`, { method: 'POST' });
      expect(response.status).toBe(500);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'order.paid', outcome: 'failure', kind: 'intent', changes: [] });
      expect(rows[0]!.error).toEqual({ name: 'Error' });
      expect((await orders().findOneByOrFail({ id: order.id })).status).toBe('new');
    });

    it('a decorated handler that committed, then threw: the failure row carries the committed change', async () => {
      const order = await seedOrder();
      expect((await t.request(`/capture/orders/${order.id}/pay-then-fail`, { method: 'POST' })).status).toBe(500);
      const rows = await t.rows();
      expect(summary(rows)).toEqual([
        {
          action: 'order.paid',
          kind: 'intent',
          changes: [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'paid' } } }],
        },
      ]);
      expect(rows[0]!.outcome).toBe('failure');
    });

    it('a manual log with the entity as target claims a change made before it', async () => {
      const order = await seedOrder();
      expect((await t.request(`/capture/orders/${order.id}/ship`, { method: 'POST', headers: { authorization: 'Bearer alice-token' } })).status).toBe(201);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'order.shipped', kind: 'intent', actorId: '1', targetType: 'Order', targetId: String(order.id) });
      expect(rows[0]!.changes).toEqual([
        { entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'shipped' } } },
      ]);
    });

    it('a manual log with { type, id } claims a change made after it', async () => {
      const order = await seedOrder();
      expect((await t.request(`/capture/orders/${order.id}/ship-later`, { method: 'POST' })).status).toBe(201);
      expect(summary(await t.rows())).toEqual([
        {
          action: 'order.shipped',
          kind: 'intent',
          changes: [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'shipped' } } }],
        },
      ]);
    });

    it('one decorated call that changes two rows: one event with both changes', async () => {
      const a = await seedOrder({ total: 10 });
      const b = await seedOrder({ total: 5 });
      expect((await t.request(`/capture/orders/${a.id}/merge/${b.id}`, { method: 'POST' })).status).toBe(201);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.targetId).toBeNull();
      expect(rows[0]!.changes).toEqual(
        expect.arrayContaining([
          { entity: 'Order', id: String(a.id), operation: 'update', fields: { total: { from: 10, to: 15 } } },
          { entity: 'Order', id: String(b.id), operation: 'update', fields: { status: { from: 'new', to: 'merged' } } },
        ]),
      );
    });
  });

  describe('writes by criteria', () => {
    it('update(criteria) in runAs: one fallback row per order with the real before values', async () => {
      const status = `new-${Math.random().toString(36).slice(2, 8)}`;
      const stale = await t.seed(() => orders().save([{ status, total: 1 }, { status, total: 2 }, { status, total: 3 }]));
      const paid = await seedOrder({ status: 'paid' });
      await job(() => orders().update({ status }, { status: 'expired' }));
      const rows = await t.rows();
      expect(rows).toHaveLength(3);
      for (const row of rows) {
        expect(row).toMatchObject({ action: 'order.updated', kind: 'change', source: 'job', actorType: 'system', actorId: 'expirer' });
        expect(row.changes).toEqual([{ entity: 'Order', id: row.targetId, operation: 'update', fields: { status: { from: status, to: 'expired' } } }]);
      }
      expect(rows.map((row) => row.targetId).sort()).toEqual(stale.map((o) => String(o.id)).sort());
      expect(rows.map((row) => row.targetId)).not.toContain(String(paid.id));
    });

    it('reads the values an expression produced, not the expression', async () => {
      const order = await seedOrder({ total: 10 });
      await job(() => orders().createQueryBuilder().update().set({ total: () => 'total + 5' }).where('id = :id', { id: order.id }).execute());
      const [row] = await t.rows();
      expect(row!.changes).toEqual([{ entity: 'Order', id: String(order.id), operation: 'update', fields: { total: { from: 10, to: 15 } } }]);
    });

    it('past maxCriteriaRows, records the rows it read and counts the rest in a partial change', async () => {
      await t.seed(() => orders().save(Array.from({ length: 7 }, (_, i) => ({ status: 'bulk', total: i }))));
      await job(() => orders().update({ status: 'bulk' }, { status: 'archived' }));
      const rows = await t.rows();
      const exact = rows.filter((row) => row.targetId !== null);
      const partial = rows.filter((row) => row.targetId === null);
      expect(exact).toHaveLength(5);
      expect(partial).toHaveLength(1);
      expect(partial[0]!.changes).toEqual([{ entity: 'Order', id: null, operation: 'update', fields: { status: { to: 'archived' } }, partial: true, count: 2 }]);
    });

    it('delete(criteria) records each deleted row with its values', async () => {
      const order = await seedOrder({ status: 'doomed', total: 7 });
      await job(() => orders().delete({ status: 'doomed' }));
      const [row] = await t.rows();
      expect(row).toMatchObject({ action: 'order.deleted', kind: 'change', targetId: String(order.id) });
      expect(row!.changes![0]).toMatchObject({
        operation: 'delete',
        fields: { id: { from: order.id, to: null }, status: { from: 'doomed', to: null }, total: { from: 7, to: null } },
      });
    });

    it('softDelete(criteria) and restore(criteria) record the delete date', async () => {
      const order = await seedOrder();
      await job(() => orders().softDelete({ id: order.id }));
      await job(() => orders().restore({ id: order.id }));
      const rows = await t.rows();
      // A soft delete is an update of the delete date that reads as a delete.
      expect(rows.map((row) => [row.action, row.changes![0]!.operation])).toEqual([
        ['order.deleted', 'update'],
        ['order.updated', 'update'],
      ]);
      const deleted = rows[0]!.changes![0]!.fields['deletedAt'] as { from: unknown; to: string };
      expect(deleted.from).toBeNull();
      expect(new Date(deleted.to).getTime()).toBeGreaterThan(Date.now() - 60_000);
      expect(rows[1]!.changes![0]!.fields['deletedAt']).toEqual({ from: deleted.to, to: null });
    });

    it('upsert records an insert for a new row and an update for an existing one', async () => {
      const customers = t.dataSource.getRepository(Customer);
      const code = Math.random().toString(36).slice(2, 10);
      const existing = await t.seed(() => customers.save({ name: 'Acme', code }));
      const freshName = `globex-${code}`;
      await job(() => customers.upsert([{ code, name: 'Acme Renamed' }], ['code']));
      await job(() => customers.upsert([{ code: `new-${code}`, name: freshName }], ['code']));
      const rows = await t.rows();
      expect(rows.map((row) => row.action)).toEqual(['customer.updated', 'customer.created']);
      expect(rows[0]!.changes).toEqual([
        { entity: 'Customer', id: String(existing.id), operation: 'update', fields: { name: { from: 'Acme', to: 'Acme Renamed' } } },
      ]);
      expect(rows[1]!.changes![0]).toMatchObject({ operation: 'insert', fields: { name: { from: null, to: freshName } } });
      expect(rows[1]!.targetId).toMatch(/^\d+$/);
    });

    it('raw SQL is recorded as a partial change of the table’s entity', async () => {
      await seedOrder();
      const table = t.dataSource.getMetadata(Order).tablePath;
      await job(() => t.dataSource.query(`UPDATE ${table.split('.').map((p) => t.dataSource.driver.escape(p)).join('.')} SET note = 'raw'`));
      expect(summary(await t.rows())).toEqual([
        { action: 'order.updated', kind: 'change', changes: [{ entity: 'Order', id: null, operation: 'update', fields: {}, partial: true }] },
      ]);
    });
  });

  describe('every operation and net changes', () => {
    it('save, insert, softRemove, recover and remove, each in its own unit', async () => {
      const saved = await job(() => orders().save({ status: 'saved', total: 1 }));
      await job(() => orders().insert({ status: 'inserted', total: 2 }));
      await job(() => orders().softRemove(saved));
      await job(() => orders().recover(saved));
      const id = saved.id;
      await job(() => orders().remove(saved));
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.changes![0]!.operation])).toEqual([
        ['order.created', 'insert'],
        ['order.created', 'insert'],
        ['order.deleted', 'update'],
        ['order.updated', 'update'],
        ['order.deleted', 'delete'],
      ]);
      expect(rows[0]!.changes![0]).toMatchObject({ id: String(id), fields: { status: { from: null, to: 'saved' }, total: { from: null, to: 1 } } });
      expect(rows[1]!.changes![0]).toMatchObject({ fields: { status: { from: null, to: 'inserted' }, total: { from: null, to: 2 } } });
      expect(rows[1]!.targetId).toMatch(/^\d+$/);
      expect(Object.keys(rows[2]!.changes![0]!.fields)).toEqual(['deletedAt']);
      expect(rows[4]!.changes![0]).toMatchObject({ id: String(id), fields: { id: { from: id, to: null }, status: { from: 'saved', to: null } } });
    });

    it('insert then update in one unit is one insert with the final values; insert then remove is nothing', async () => {
      await job(async () => {
        const order = await orders().save({ status: 'new', total: 1 });
        order.status = 'paid';
        await orders().save(order);
        const gone = await orders().save({ status: 'temp', total: 0 });
        await orders().remove(gone);
      });
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ operation: 'insert', fields: { status: { from: null, to: 'paid' }, total: { from: null, to: 1 } } });
    });

    it('repeated updates merge to first from / last to; a field changed back is dropped; a no-op save records nothing', async () => {
      const order = await seedOrder({ status: 'new', total: 1 });
      await job(async () => {
        order.status = 'paid';
        order.total = 2;
        await orders().save(order);
        order.status = 'shipped';
        order.total = 1;
        await orders().save(order);
      });
      expect((await t.rows()).map((row) => row.changes)).toEqual([
        [{ entity: 'Order', id: String(order.id), operation: 'update', fields: { status: { from: 'new', to: 'shipped' } } }],
      ]);
      await t.clearAudit();
      await job(() => orders().save(order));
      expect(await t.rows()).toHaveLength(0);
    });

    it('a many-to-one change records the related id', async () => {
      const [acme, globex] = await t.seed(() => t.dataSource.getRepository(Customer).save([{ name: 'Acme' }, { name: 'Globex' }]));
      const order = await seedOrder({ customer: acme });
      await job(async () => {
        order.customer = globex;
        await orders().save(order);
      });
      expect((await t.rows())[0]!.changes).toEqual([
        { entity: 'Order', id: String(order.id), operation: 'update', fields: { customer: { from: acme!.id, to: globex!.id } } },
      ]);
    });

    it('a many-to-many change records the ids added and removed', async () => {
      const [ann, ben, cat] = await t.seed(() => users().save([{ email: 'ann@x.io' }, { email: 'ben@x.io' }, { email: 'cat@x.io' }]));
      await t.seed(() => users().save({ ...ann!, following: [ben!] }));
      await job(async () => {
        const loaded = await users().findOneOrFail({ where: { id: ann!.id }, relations: { following: true } });
        loaded.following = [cat!];
        await users().save(loaded);
      });
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'user.updated', kind: 'change', targetType: 'User', targetId: String(ann!.id) });
      expect(rows[0]!.changes).toEqual([
        { entity: 'User', id: String(ann!.id), operation: 'update', fields: { following: { added: [String(cat!.id)], removed: [String(ben!.id)] } } },
      ]);
    });
  });

  describe('transactions', () => {
    it('outside any unit: a committed change is written with it; a rolled-back one is not', async () => {
      await t.dataSource.transaction(async (manager) => {
        await manager.save(Order, { status: 'committed', total: 1 });
      });
      await t.dataSource
        .transaction(async (manager) => {
          await manager.save(Order, { status: 'rolled-back', total: 1 });
          throw new Error('abort');
        })
        .catch(() => undefined);
      const rows = await t.rows();
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'order.created', kind: 'change', source: 'system', actorType: 'system', requestId: null });
      expect(rows[0]!.changes![0]!.fields['status']).toEqual({ from: null, to: 'committed' });
    });

    it('outside any unit: the fallback row is in the transaction before it commits', async () => {
      let seenInside = -1;
      await t.dataSource.transaction(async (manager) => {
        await manager.save(Order, { status: 'x', total: 1 });
        seenInside = await manager.getRepository(Order).count();
      });
      expect(seenInside).toBeGreaterThan(0);
      expect(await t.rows()).toHaveLength(1);
    });

    it('inside a unit: a rolled-back transaction leaves no trace; an inner rollback keeps the outer commit', async () => {
      await job(async () => {
        await t.dataSource
          .transaction(async (manager) => {
            await manager.save(Order, { status: 'lost', total: 1 });
            throw new Error('abort');
          })
          .catch(() => undefined);
      });
      expect(await t.rows()).toHaveLength(0);

      await job(() =>
        t.dataSource.transaction(async (manager) => {
          await manager.save(Order, { status: 'kept', total: 1 });
          await manager
            .transaction(async (inner) => {
              await inner.save(Order, { status: 'inner-lost', total: 1 });
              throw new Error('abort inner');
            })
            .catch(() => undefined);
        }),
      );
      const statuses = (await t.rows()).map((row) => (row.changes![0]!.fields['status'] as { to: string }).to);
      expect(statuses).toEqual(['kept']);
    });
  });

  describe('redaction and scope', () => {
    it('masks a password in from and to, and secrets at any depth', async () => {
      const user = await t.seed(() => users().save({ email: 'pw@x.io', password: 'old-secret', profile: { nested: { apiKey: 'k1', colour: 'red' } } }));
      await job(async () => {
        user.password = 'new-secret';
        user.profile = { nested: { apiKey: 'k2', colour: 'blue' } };
        await users().save(user);
      });
      const [row] = await t.rows();
      expect(row!.changes![0]!.fields).toEqual({
        password: { from: '[REDACTED]', to: '[REDACTED]' },
        profile: { from: { nested: { apiKey: '[REDACTED]', colour: 'red' } }, to: { nested: { apiKey: '[REDACTED]', colour: 'blue' } } },
      });
      expect(JSON.stringify(row)).not.toMatch(/secret|k1|k2/);
    });

    it('leaves out excluded fields and entities, and never captures audit_log itself', async () => {
      const user = await t.seed(() => users().save({ email: 'ex@x.io' }));
      await job(async () => {
        user.loginCount = 5;
        await users().save(user);
        await t.dataSource.getRepository(Session).save({ token: 'abc' });
      });
      expect(await t.rows()).toHaveLength(0);
      await job(() => t.audit.log({ action: 'audit.checked' }));
      expect((await t.rows()).map((row) => row.action)).toEqual(['audit.checked']);
    });
  });
});
