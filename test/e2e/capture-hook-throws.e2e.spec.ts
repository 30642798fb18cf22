import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn, type EntitySubscriberInterface, type InsertEvent, type UpdateEvent } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';

@Entity('ht_order')
class HtOrder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) item!: string;
  @Column({ type: 'int', default: 0 }) qty!: number;
  @Column({ type: 'int', default: 0 }) touched!: number;
}

@Entity('ht_note')
class HtNote {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) text!: string;
}

type Hook = 'beforeInsert' | 'beforeUpdate' | 'afterInsert' | 'afterUpdate';
let hookWork: Partial<Record<Hook, (event: InsertEvent<HtOrder> | UpdateEvent<HtOrder>) => Promise<void>>> = {};

class HtSubscriber implements EntitySubscriberInterface<HtOrder> {
  listenTo() {
    return HtOrder;
  }
  beforeInsert(event: InsertEvent<HtOrder>) {
    return hookWork.beforeInsert?.(event);
  }
  beforeUpdate(event: UpdateEvent<HtOrder>) {
    return hookWork.beforeUpdate?.(event);
  }
  afterInsert(event: InsertEvent<HtOrder>) {
    return hookWork.afterInsert?.(event);
  }
  afterUpdate(event: UpdateEvent<HtOrder>) {
    return hookWork.afterUpdate?.(event);
  }
}

/**
 * The app's hooks of a query builder's write made in no transaction of its own (TypeORM
 * opens none for it): one that throws after the statement, one that writes before it. The
 * app sees what it sees without the module (the hook's error; the statement committed or
 * not as TypeORM leaves it), and each committed change is recorded once.
 */
describe.each(databases())('hooks of a query builder write made in no transaction, on %s', (kind) => {
  const h = captureApp(kind, [HtOrder, HtNote]);
  beforeAll(() => {
    h.ds.subscribers.unshift(new HtSubscriber());
  });
  afterEach(() => {
    hookWork = {};
  });
  const orders = () => h.ds.getRepository(HtOrder);
  const table = () => h.table('ht_order');
  const p = (n: number) => h.param(n);

  /** What `fn` threw (its message), or null. */
  const thrown = async (fn: () => Promise<unknown>): Promise<string | null> => {
    try {
      await fn();
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  };

  describe.each(MODES)('%s', (mode) => {
    it('repository.insert(): an afterInsert hook throws; the app gets its error, the committed row is recorded once', async () => {
      const item = `ti-${mode}`;
      hookWork.afterInsert = () => Promise.reject(new Error('after-insert hook failed'));
      if (mode === 'fallback') expect(await thrown(() => orders().insert({ item, qty: 2 }))).toBe('after-insert hook failed');
      else expect((await h.run(mode, () => orders().insert({ item, qty: 2 }))).status).toBe(500);
      const order = await orders().findOneByOrFail({ item });
      const inserts = (await h.changes()).filter((change) => change.entity === 'HtOrder' && change.operation === 'insert');
      expect(inserts).toHaveLength(1);
      expect(inserts[0]).toMatchObject({ id: String(order.id), fields: { item: { to: item } } });
    });

    it('repository.update(): an afterUpdate hook throws; the app gets its error, the committed update is recorded once', async () => {
      const order = await h.t.seed(() => orders().save({ item: `tu-${mode}`, qty: 1 }));
      hookWork.afterUpdate = () => Promise.reject(new Error('after-update hook failed'));
      if (mode === 'fallback') expect(await thrown(() => orders().update({ id: order.id }, { qty: 7 }))).toBe('after-update hook failed');
      else expect((await h.run(mode, () => orders().update({ id: order.id }, { qty: 7 }))).status).toBe(500);
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ qty: 7 });
      const updates = (await h.changes()).filter((change) => change.entity === 'HtOrder' && change.operation === 'update');
      expect(updates).toHaveLength(1);
      expect(updates[0]).toMatchObject({ id: String(order.id), fields: { qty: { from: 1, to: 7 } } });
    });

    it('repository.update(): a beforeUpdate hook updates the rows on another connection; it neither waits nor fails, and both changes are kept', async () => {
      const order = await h.t.seed(() => orders().save({ item: `bu-${mode}`, qty: 1 }));
      hookWork.beforeUpdate = async () => {
        const runner = h.ds.createQueryRunner();
        try {
          if (kind === 'postgres') await runner.query("SET lock_timeout = '3s'");
          if (kind === 'mariadb') await runner.query('SET SESSION innodb_lock_wait_timeout = 3');
          await runner.query(`UPDATE ${table()} SET touched = touched + 1 WHERE id = ${p(1)}`, [order.id]);
        } finally {
          await runner.release();
        }
      };
      const ok = { status: mode === 'handler' ? 201 : null, error: null };
      expect(await h.run(mode, () => orders().update({ id: order.id }, { qty: 4 }))).toEqual(ok);
      expect(await orders().findOneByOrFail({ id: order.id })).toMatchObject({ qty: 4, touched: 1 });
    });

    it("repository.insert(): a beforeInsert hook inserts a note through the event's manager, then the insert fails; the note stays, as without the module, and is recorded", async () => {
      const item = `dup-${mode}`;
      await h.t.seed(() => orders().save({ item, qty: 1 }));
      hookWork.beforeInsert = async (event) => {
        await event.manager.insert(HtNote, { text: `note-${mode}` });
      };
      if (mode === 'fallback') expect(await thrown(() => orders().insert({ item, qty: 2 }))).not.toBeNull();
      else expect((await h.run(mode, () => orders().insert({ item, qty: 2 }))).status).toBe(500);
      expect(await h.ds.getRepository(HtNote).countBy({ text: `note-${mode}` })).toBe(1);
      const notes = (await h.changes()).filter((change) => change.entity === 'HtNote' && change.operation === 'insert');
      expect(notes).toHaveLength(1);
    });
  });
});
