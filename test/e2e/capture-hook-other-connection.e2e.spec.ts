import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn, type EntitySubscriberInterface, type InsertEvent, type RemoveEvent, type UpdateEvent } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';

@Entity('oc_order')
class OcOrder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) item!: string;
  @Column({ type: 'int', default: 0 }) qty!: number;
  @Column({ type: 'int', default: 0 }) touched!: number;
}

type Hook = 'afterInsert' | 'afterUpdate' | 'afterRemove';
/** What the app's subscriber does in a hook of an order, for the test running now. */
let hookWork: Partial<Record<Hook, () => Promise<void>>> = {};

/** An app's subscriber of orders whose hooks write through a connection of their own (not the write's query runner). */
class OtherConnectionSubscriber implements EntitySubscriberInterface<OcOrder> {
  listenTo() {
    return OcOrder;
  }
  afterInsert(_event: InsertEvent<OcOrder>) {
    return hookWork.afterInsert?.();
  }
  afterUpdate(_event: UpdateEvent<OcOrder>) {
    return hookWork.afterUpdate?.();
  }
  afterRemove(_event: RemoveEvent<OcOrder>) {
    return hookWork.afterRemove?.();
  }
}

/**
 * Without a transaction of the app's, `repository.insert()`, `update()` and `delete()` commit
 * their statement before TypeORM calls the app's after-hooks (TypeORM opens no transaction
 * for them): a hook may write the rows they wrote through another connection (a query runner
 * of its own, a data source's repository outside any transaction). The module records these
 * writes without holding their rows locked while the hooks run: such a hook neither waits
 * for a lock nor misses the row, as it does not without the module.
 */
describe.each(databases())("after-hooks writing a query builder write's rows through another connection, on %s", (kind) => {
  const h = captureApp(kind, [OcOrder]);
  beforeAll(() => {
    h.ds.subscribers.unshift(new OtherConnectionSubscriber());
  });
  afterEach(() => {
    hookWork = {};
  });
  const orders = () => h.ds.getRepository(OcOrder);

  /** Runs `sql` on a connection of its own that gives up waiting for a lock after 3 s. */
  const onOtherConnection = async (sql: string, parameters: unknown[]): Promise<void> => {
    const runner = h.ds.createQueryRunner();
    try {
      if (kind === 'postgres') await runner.query("SET lock_timeout = '3s'");
      if (kind === 'mariadb') await runner.query('SET SESSION innodb_lock_wait_timeout = 3');
      await runner.query(sql, parameters);
    } finally {
      await runner.release();
    }
  };
  const table = () => h.table('oc_order');
  const touch = (id: number) => onOtherConnection(`UPDATE ${table()} SET touched = touched + 1 WHERE id = ${kind === 'postgres' ? '$1' : '?'}`, [id]);
  const ok = (mode: string) => ({ status: mode === 'handler' ? 201 : null, error: null });

  describe.each(MODES)('%s', (mode) => {
    it("repository.update(): an afterUpdate hook updates the row on another connection; the update and the order's change are recorded", async () => {
      const order = await h.t.seed(() => orders().save({ item: `u-${mode}`, qty: 1 }));
      hookWork.afterUpdate = () => touch(order.id);
      expect(await h.run(mode, () => orders().update({ id: order.id }, { qty: 5 }))).toEqual(ok(mode));
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ qty: 5, touched: 1 });
      const changes = (await h.changes()).filter((change) => change.entity === 'OcOrder' && change.operation === 'update' && change.fields.qty);
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({ id: String(order.id), fields: { qty: { from: 1, to: 5 } } });
    });

    it('repository.insert(): an afterInsert hook updates the new row on another connection; the insert is recorded once', async () => {
      const item = `i-${mode}`;
      // By its item: the hook of `insert()` runs before TypeORM sets the generated id on the values.
      hookWork.afterInsert = () => onOtherConnection(`UPDATE ${table()} SET touched = touched + 1 WHERE item = ${kind === 'postgres' ? '$1' : '?'}`, [item]);
      expect(await h.run(mode, () => orders().insert({ item, qty: 2 }))).toEqual(ok(mode));
      const order = await orders().findOneByOrFail({ item });
      expect(order).toMatchObject({ qty: 2, touched: 1 });
      const inserts = (await h.changes()).filter((change) => change.entity === 'OcOrder' && change.operation === 'insert');
      expect(inserts).toHaveLength(1);
      expect(inserts[0]).toMatchObject({ id: String(order.id), fields: { item: { from: null, to: item }, qty: { from: null, to: 2 } } });
    });

    it('an insert query builder with updateEntity(false): an afterInsert hook updates the new row on another connection; the insert is recorded once, with its id', async () => {
      const item = `ne-${mode}`;
      hookWork.afterInsert = () => onOtherConnection(`UPDATE ${table()} SET touched = touched + 1 WHERE item = ${kind === 'postgres' ? '$1' : '?'}`, [item]);
      const write = () => h.ds.createQueryBuilder().insert().into(OcOrder).values({ item, qty: 3 }).updateEntity(false).execute();
      expect(await h.run(mode, write)).toEqual(ok(mode));
      const order = await orders().findOneByOrFail({ item });
      expect(order).toMatchObject({ qty: 3, touched: 1 });
      const inserts = (await h.changes()).filter((change) => change.entity === 'OcOrder' && change.operation === 'insert');
      expect(inserts).toHaveLength(1);
      expect(inserts[0]).toMatchObject({ id: String(order.id), fields: { id: { from: null, to: order.id }, item: { from: null, to: item }, qty: { from: null, to: 3 } } });
    });

    it('repository.delete(): an afterRemove hook inserts a row with the same key on another connection', async () => {
      const order = await h.t.seed(() => orders().save({ item: `d-${mode}`, qty: 1 }));
      hookWork.afterRemove = () =>
        onOtherConnection(`INSERT INTO ${table()} (id, item, qty, touched) VALUES (${kind === 'postgres' ? '$1' : '?'}, 'again', 0, 0)`, [order.id]);
      expect(await h.run(mode, () => orders().delete({ id: order.id }))).toEqual(ok(mode));
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ item: 'again' });
      const deletes = (await h.changes()).filter((change) => change.entity === 'OcOrder' && change.operation === 'delete');
      expect(deletes).toHaveLength(1);
      expect(deletes[0]).toMatchObject({ id: String(order.id), fields: { item: { from: `d-${mode}`, to: null } } });
    });
  });
});
