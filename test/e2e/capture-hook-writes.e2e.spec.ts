import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AfterInsert,
  Column,
  DeleteDateColumn,
  Entity,
  InsertQueryBuilder,
  JoinTable,
  Like,
  ManyToMany,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  type EntityManager,
  type EntitySubscriberInterface,
  type InsertEvent,
  type InsertResult,
  type QueryRunner,
  type RemoveEvent,
  type SoftRemoveEvent,
  type UpdateEvent,
} from 'typeorm';
import type { AuditChange } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { MODES, captureApp, type Mode } from '../app/capture-harness.js';

@Entity('hk_order')
class HkOrder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) item!: string;
  @Column({ type: 'int', default: 0 }) qty!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;

  /** An entity listener of the order's insert: writes through the app's data source, as listeners (given no manager) do. */
  @AfterInsert()
  listened(): Promise<void> | void {
    if (listenerWrite) return listenerWrite(this);
  }
}

/** The row an app's hooks write. */
@Entity('hk_history')
class HkHistory {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) note!: string;
  @Column({ type: 'int', default: 0 }) n!: number;
}

/** A row keyed by a value the app gives (an INSERT … SELECT's select gives it). */
@Entity('hk_copy')
class HkCopy {
  @PrimaryColumn({ type: 'varchar', length: 40 }) code!: string;
  @Column({ type: 'int' }) qty!: number;
}

/** A row keyed by a number the app gives (on SQLite, an integer primary key is the rowid). */
@Entity('hk_numbered')
class HkNumbered {
  @PrimaryColumn() num!: number;
  @Column({ type: 'varchar', length: 40 }) label!: string;
}

/** A many-to-many whose links an INSERT … SELECT writes into the junction table. */
@Entity('hk_label')
class HkLabel {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
}

@Entity('hk_box')
class HkBox {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @ManyToMany(() => HkLabel) @JoinTable({ name: 'hk_box_labels' }) labels?: HkLabel[];
}

type Hook = 'beforeInsert' | 'afterInsert' | 'beforeUpdate' | 'afterUpdate' | 'afterRemove' | 'afterSoftRemove' | 'afterRecover';
type HookEvent = { manager: EntityManager; queryRunner: QueryRunner };
/** What the app's subscriber writes in one of its hooks of an order, for the test running now. */
let hookWrites: Partial<Record<Hook, (event: HookEvent) => Promise<unknown>>> = {};
/** What the order's entity listener writes, for the test running now. */
let listenerWrite: ((order: HkOrder) => Promise<void>) | undefined;

/** An app's subscriber of orders whose hooks write other rows, on the write's own query runner. */
class HookSubscriber implements EntitySubscriberInterface<HkOrder> {
  listenTo() {
    return HkOrder;
  }
  private write(hook: Hook, event: HookEvent): Promise<void> | void {
    const write = hookWrites[hook];
    if (write) return write(event).then(() => undefined);
  }
  beforeInsert(event: InsertEvent<HkOrder>) {
    return this.write('beforeInsert', event);
  }
  afterInsert(event: InsertEvent<HkOrder>) {
    return this.write('afterInsert', event);
  }
  beforeUpdate(event: UpdateEvent<HkOrder>) {
    return this.write('beforeUpdate', event);
  }
  afterUpdate(event: UpdateEvent<HkOrder>) {
    return this.write('afterUpdate', event);
  }
  afterRemove(event: RemoveEvent<HkOrder>) {
    return this.write('afterRemove', event);
  }
  afterSoftRemove(event: SoftRemoveEvent<HkOrder>) {
    return this.write('afterSoftRemove', event);
  }
  afterRecover(event: SoftRemoveEvent<HkOrder>) {
    return this.write('afterRecover', event);
  }
}

const HK_ENTITIES = [HkOrder, HkHistory, HkCopy, HkNumbered, HkLabel, HkBox];

/** `valuesFromSelect()` (INSERT … SELECT) exists from TypeORM 1 on. */
const insertsFromSelect = typeof (InsertQueryBuilder.prototype as { valuesFromSelect?: unknown }).valuesFromSelect === 'function';

/**
 * Writes an app's subscriber (or entity listener) makes in its hooks of a query builder's
 * write (`repository.insert()`, `update()`, `delete()`, `softDelete()`, a builder's
 * `execute()`) are changes like any other: each recorded once, in the unit of work's event
 * or in a fallback event committed in its transaction, and nothing when it rolls back. So
 * are the rows an `INSERT … SELECT` (`valuesFromSelect()`) inserts.
 */
describe.each(databases())('writes of app hooks of query builder writes, and INSERT … SELECT, on %s', (kind) => {
  const h = captureApp(kind, HK_ENTITIES);
  beforeAll(() => {
    // Called before the module's subscriber, as an app's subscriber registered first is.
    h.ds.subscribers.unshift(new HookSubscriber());
  });
  afterEach(() => {
    hookWrites = {};
    listenerWrite = undefined;
  });
  const orders = () => h.ds.getRepository(HkOrder);
  const histories = () => h.ds.getRepository(HkHistory);

  /** The changes of every event stored: the handler's intent event, or one fallback change event per entity instance. */
  const recorded = async (mode: Mode): Promise<AuditChange[]> => {
    const rows = await h.t.rows();
    if (mode === 'handler') {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ action: 'edge.run', kind: 'intent', outcome: 'success' });
    } else {
      for (const row of rows) {
        expect(row).toMatchObject({ kind: 'change', outcome: 'success' });
        expect(row.changes).toHaveLength(1);
      }
    }
    return rows.flatMap((row) => row.changes ?? []);
  };
  const historyInserted = (row: HkHistory) => ({
    entity: 'HkHistory',
    id: String(row.id),
    operation: 'insert',
    fields: { id: { from: null, to: row.id }, note: { from: null, to: row.note }, n: { from: null, to: row.n } },
  });
  const orderInserted = (row: HkOrder) => ({
    entity: 'HkOrder',
    id: String(row.id),
    operation: 'insert',
    fields: { id: { from: null, to: row.id }, item: { from: null, to: row.item }, qty: { from: null, to: row.qty }, deletedAt: { from: null, to: null } },
  });
  /** Tells apart the rows of cases that share a hook. */
  let unique = 0;
  const seedHistory = (note: string) => h.t.seed(() => histories().save({ note, n: 0 }));

  /** The forms of a hook's write: through the manager the event gives, its query runner's, or by hand. */
  const writes = {
    'save()': (note: string) => (event: HookEvent) => event.manager.save(HkHistory, { note, n: 1 }),
    'insert() on the query runner': (note: string) => (event: HookEvent) => event.queryRunner.manager.insert(HkHistory, { note, n: 1 }),
  };

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    describe.each(Object.keys(writes) as Array<keyof typeof writes>)('a hook inserting a row with %s', (form) => {
      it.each([
        ['beforeInsert', 'repository.insert()'],
        ['afterInsert', 'repository.insert()'],
      ] as const)('in %s of %s records the order and the row, once each', async (hook, _write) => {
        const note = `${hook}-${form.slice(0, 6)}-${mode}-${++unique}`;
        hookWrites[hook] = writes[form](note);
        const item = `i-${note}`;
        expect(await h.run(mode, () => orders().insert(orders().create({ item, qty: 2 })))).toEqual(ok);
        const order = await orders().findOneByOrFail({ item });
        const history = await histories().findOneByOrFail({ note });
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(expect.arrayContaining([orderInserted(order), historyInserted(history)]));
      });

      it.each([
        ['afterUpdate', 'repository.update()', (id: number) => orders().update({ id }, { qty: 5 })],
        ['afterUpdate', 'an update query builder', (id: number) => h.ds.createQueryBuilder().update(HkOrder).set({ qty: 5 }).where('id = :id', { id }).execute()],
        ['beforeUpdate', 'repository.update()', (id: number) => orders().update({ id }, { qty: 5 })],
        ['afterRemove', 'repository.delete()', (id: number) => orders().delete({ id })],
        ['afterSoftRemove', 'repository.softDelete()', (id: number) => orders().softDelete({ id })],
      ] as const)('in %s of %s records the order\'s change and the row, once each', async (hook, _write, write) => {
        const note = `${hook}-${form.slice(0, 6)}-${mode}-${++unique}`;
        const order = await h.t.seed(() => orders().save({ item: `i-${note}`, qty: 1 }));
        hookWrites[hook] = writes[form](note);
        expect(await h.run(mode, () => write(order.id))).toEqual(ok);
        const history = await histories().findOneByOrFail({ note });
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toContainEqual(historyInserted(history));
        expect(changes.filter((change) => change.entity === 'HkOrder')).toEqual([expect.objectContaining({ entity: 'HkOrder', id: String(order.id) })]);
      });
    });

    describe('a hook changing rows by criteria', () => {
      it.each([
        ['an update of the repository', (id: number) => (event: HookEvent) => event.manager.getRepository(HkHistory).update({ id }, { n: 5 })],
        ['an update query builder with listeners off', (id: number) => (event: HookEvent) =>
          event.manager.createQueryBuilder().update(HkHistory).set({ n: 5 }).where('id = :id', { id }).callListeners(false).execute()],
      ] as const)('in afterInsert of repository.insert(): %s records the row\'s update, with its before values', async (_form, write) => {
        const history = await seedHistory(`crit-${mode}`);
        hookWrites.afterInsert = write(history.id);
        const item = `crit-${mode}-${_form.length}`;
        expect(await h.run(mode, () => orders().insert({ item, qty: 3 }))).toEqual(ok);
        const order = await orders().findOneByOrFail({ item });
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([orderInserted(order), { entity: 'HkHistory', id: String(history.id), operation: 'update', fields: { n: { from: 0, to: 5 } } }]),
        );
      });

      it('in afterUpdate of an update query builder: a delete of the repository records the row\'s delete', async () => {
        const history = await seedHistory(`gone-${mode}`);
        const order = await h.t.seed(() => orders().save({ item: `del-${mode}`, qty: 1 }));
        hookWrites.afterUpdate = (event) => event.manager.getRepository(HkHistory).delete({ id: history.id });
        expect(await h.run(mode, () => h.ds.createQueryBuilder().update(HkOrder).set({ qty: 8 }).where('id = :id', { id: order.id }).execute())).toEqual(ok);
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([
            { entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 8 } } },
            { entity: 'HkHistory', id: String(history.id), operation: 'delete', fields: { id: { from: history.id, to: null }, note: { from: history.note, to: null }, n: { from: 0, to: null } } },
          ]),
        );
      });

      // In a unit of work, the hook's write is a later change of the row in the same unit: the
      // row has one net change. Outside one, the update runs in no transaction of the app's, and
      // TypeORM commits it before its after-hooks run: the hook's write is a change of its own.
      it('in afterUpdate of repository.update(): an update of the same row is part of the row\'s one change in a unit, a later change outside one', async () => {
        const order = await h.t.seed(() => orders().save({ item: `same-${mode}`, qty: 1 }));
        let once = false;
        hookWrites.afterUpdate = async (event) => {
          if (once) return;
          once = true;
          await event.manager.getRepository(HkOrder).update({ id: order.id }, { qty: 6, item: `same2-${mode}` });
        };
        expect(await h.run(mode, () => orders().update({ id: order.id }, { qty: 5 }))).toEqual(ok);
        expect((await orders().findOneByOrFail({ id: order.id })).qty).toBe(6);
        expect(await recorded(mode)).toEqual(
          mode === 'handler'
            ? [{ entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 6 }, item: { from: `same-${mode}`, to: `same2-${mode}` } } }]
            : [
                { entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 5 } } },
                { entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 5, to: 6 }, item: { from: `same-${mode}`, to: `same2-${mode}` } } },
              ],
        );
      });

      it('in afterUpdate of an update query builder: a delete of the same row is the row\'s delete in a unit, with its values before both; a later delete outside one', async () => {
        const order = await h.t.seed(() => orders().save({ item: `same-del-${mode}`, qty: 1 }));
        hookWrites.afterUpdate = (event) => event.manager.getRepository(HkOrder).delete({ id: order.id });
        expect(await h.run(mode, () => h.ds.createQueryBuilder().update(HkOrder).set({ qty: 5 }).where('id = :id', { id: order.id }).execute())).toEqual(ok);
        expect(await orders().findOneBy({ id: order.id })).toBeNull();
        const deleted = (qty: number) => ({
          entity: 'HkOrder',
          id: String(order.id),
          operation: 'delete',
          fields: { id: { from: order.id, to: null }, item: { from: order.item, to: null }, qty: { from: qty, to: null }, deletedAt: { from: null, to: null } },
        });
        expect(await recorded(mode)).toEqual(
          mode === 'handler' ? [deleted(1)] : [{ entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 5 } } }, deleted(5)],
        );
      });

      // Outside a unit, TypeORM runs the before-hooks of an update it runs in no transaction
      // in none either: the hook's write is committed before the update, a change of its own.
      it('in beforeUpdate of repository.update(): an update of the same row is part of the row\'s one change in a unit, an earlier change outside one', async () => {
        const order = await h.t.seed(() => orders().save({ item: `same-b-${mode}`, qty: 1 }));
        let once = false;
        hookWrites.beforeUpdate = async (event) => {
          if (once) return;
          once = true;
          await event.manager.getRepository(HkOrder).update({ id: order.id }, { qty: 3, item: `same-b2-${mode}` });
        };
        expect(await h.run(mode, () => orders().update({ id: order.id }, { qty: 5 }))).toEqual(ok);
        expect((await orders().findOneByOrFail({ id: order.id })).qty).toBe(5);
        expect(await recorded(mode)).toEqual(
          mode === 'handler'
            ? [{ entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 5 }, item: { from: `same-b-${mode}`, to: `same-b2-${mode}` } } }]
            : [
                { entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 1, to: 3 }, item: { from: `same-b-${mode}`, to: `same-b2-${mode}` } } },
                { entity: 'HkOrder', id: String(order.id), operation: 'update', fields: { qty: { from: 3, to: 5 } } },
              ],
        );
      });

      it('in afterSoftRemove of repository.softDelete() and afterRecover of restore(): updates of the repository are recorded', async () => {
        const history = await seedHistory(`soft-${mode}`);
        const order = await h.t.seed(() => orders().save({ item: `soft-${mode}`, qty: 1 }));
        hookWrites.afterSoftRemove = (event) => event.manager.getRepository(HkHistory).update({ id: history.id }, { n: 1 });
        hookWrites.afterRecover = (event) => event.manager.getRepository(HkHistory).update({ id: history.id }, { n: 2 });
        expect(await h.run(mode, () => orders().softDelete({ id: order.id }))).toEqual(ok);
        let changes = await recorded(mode);
        expect(changes.filter((change) => change.entity === 'HkHistory')).toEqual([{ entity: 'HkHistory', id: String(history.id), operation: 'update', fields: { n: { from: 0, to: 1 } } }]);
        expect(changes).toHaveLength(2);
        await h.t.clearAudit();
        expect(await h.run(mode, () => orders().restore({ id: order.id }))).toEqual(ok);
        changes = await recorded(mode);
        expect(changes.filter((change) => change.entity === 'HkHistory')).toEqual([{ entity: 'HkHistory', id: String(history.id), operation: 'update', fields: { n: { from: 1, to: 2 } } }]);
        expect(changes).toHaveLength(2);
      });

      it('in afterInsert of repository.insert(): raw SQL on the event\'s manager is recorded as raw SQL is', async () => {
        const history = await seedHistory(`raw-${mode}`);
        const table = h.ds
          .getMetadata(HkHistory)
          .tablePath.split('.')
          .map((part) => h.ds.driver.escape(part))
          .join('.');
        hookWrites.afterInsert = (event) => event.manager.query(`UPDATE ${table} SET n = 4 WHERE id = ${history.id}`);
        const item = `raw-${mode}`;
        expect(await h.run(mode, () => orders().insert({ item, qty: 3 }))).toEqual(ok);
        expect((await histories().findOneByOrFail({ id: history.id })).n).toBe(4);
        const order = await orders().findOneByOrFail({ item });
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(expect.arrayContaining([orderInserted(order), { entity: 'HkHistory', id: null, operation: 'update', fields: {}, partial: true }]));
      });

      it('in afterInsert of save(): an update query builder with listeners off records the row\'s update', async () => {
        const history = await seedHistory(`saved-${mode}`);
        hookWrites.afterInsert = (event) =>
          event.manager.createQueryBuilder().update(HkHistory).set({ n: 6 }).where('id = :id', { id: history.id }).callListeners(false).execute();
        const order = orders().create({ item: `saved-${mode}`, qty: 1 });
        expect(await h.run(mode, () => orders().save(order))).toEqual(ok);
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([orderInserted(await orders().findOneByOrFail({ id: order.id })), { entity: 'HkHistory', id: String(history.id), operation: 'update', fields: { n: { from: 0, to: 6 } } }]),
        );
      });
    });

    it('an entity listener of repository.insert() writing through the data source: its write is recorded', async () => {
      const history = await seedHistory(`listener-${mode}`);
      listenerWrite = async () => {
        await h.ds.getRepository(HkHistory).update({ id: history.id }, { n: 9 });
      };
      const item = `listener-${mode}`;
      expect(await h.run(mode, () => orders().insert(orders().create({ item, qty: 1 })))).toEqual(ok);
      const order = await orders().findOneByOrFail({ item });
      const changes = await recorded(mode);
      expect(changes).toHaveLength(2);
      expect(changes).toEqual(expect.arrayContaining([orderInserted(order), { entity: 'HkHistory', id: String(history.id), operation: 'update', fields: { n: { from: 0, to: 9 } } }]));
    });

    it('a rolled-back transaction records neither the write nor what its hooks wrote', async () => {
      const history = await seedHistory(`rb-${mode}`);
      const order = await h.t.seed(() => orders().save({ item: `rb-${mode}`, qty: 1 }));
      hookWrites.afterInsert = (event) => event.manager.getRepository(HkHistory).update({ id: history.id }, { n: 3 });
      hookWrites.afterUpdate = (event) => event.manager.save(HkHistory, { note: `rb-new-${mode}`, n: 1 });
      const outcome = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          await manager.getRepository(HkOrder).insert({ item: `rb-ins-${mode}`, qty: 1 });
          await manager.getRepository(HkOrder).update({ id: order.id }, { qty: 2 });
          throw new Error('rolled back');
        }),
      );
      expect(outcome.status ?? (outcome.error as Error).message).toBe(mode === 'handler' ? 500 : 'rolled back');
      expect((await histories().findOneByOrFail({ id: history.id })).n).toBe(0);
      expect(await histories().findOneBy({ note: `rb-new-${mode}` })).toBeNull();
      expect(await orders().findOneBy({ item: `rb-ins-${mode}` })).toBeNull();
      expect(await h.changes()).toEqual([]);
      if (mode === 'fallback') expect(await h.t.rows()).toEqual([]);
    });

    describe.skipIf(!insertsFromSelect)('INSERT … SELECT (valuesFromSelect)', () => {
      const seedOrders = (prefix: string) =>
        h.t.seed(() =>
          orders().save([
            { item: `${prefix}-a`, qty: 3 },
            { item: `${prefix}-b`, qty: 4 },
            { item: `other-${prefix}`, qty: 5 },
          ]),
        );
      const intoHistory = (manager: EntityManager, prefix: string) =>
        manager
          .createQueryBuilder()
          .insert()
          .into(HkHistory, ['note', 'n'])
          .valuesFromSelect((select) => select.select('o.item', 'note').addSelect('o.qty', 'n').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
          .execute();

      it('records each row inserted under its generated id, with its values', async () => {
        const prefix = `sel-${mode}`;
        await seedOrders(prefix);
        expect(await h.run(mode, () => intoHistory(h.ds.manager, prefix))).toEqual(ok);
        const rows = await histories().find({ where: [{ note: `${prefix}-a` }, { note: `${prefix}-b` }], order: { id: 'ASC' } });
        expect(rows).toHaveLength(2);
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(expect.arrayContaining(rows.map(historyInserted)));
      });

      it('in a transaction of the app, records the rows under their ids', async () => {
        const prefix = `tx-${mode}`;
        await seedOrders(prefix);
        expect(await h.run(mode, () => h.ds.transaction((manager) => intoHistory(manager, prefix)))).toEqual(ok);
        const rows = await histories().find({ where: [{ note: `${prefix}-a` }, { note: `${prefix}-b` }], order: { id: 'ASC' } });
        expect(await recorded(mode)).toEqual(expect.arrayContaining(rows.map(historyInserted)));
        expect(await h.changes()).toHaveLength(2);
      });

      it('records each row under the key the select gave it, exactly where the database tells which rows it inserted', async () => {
        const prefix = `key-${mode}`;
        await seedOrders(prefix);
        let result: InsertResult | undefined;
        expect(
          await h.run(mode, async () => {
            result = await h.ds
              .createQueryBuilder()
              .insert()
              .into(HkCopy, ['code', 'qty'])
              .valuesFromSelect((select) => select.select('o.item', 'code').addSelect('o.qty', 'qty').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
              .execute();
          }),
        ).toEqual(ok);
        const changes = await recorded(mode);
        if (kind === 'mariadb') {
          // No RETURNING asked for, and keys the database did not generate: it says how many rows, not which.
          expect(changes).toEqual([{ entity: 'HkCopy', id: null, operation: 'insert', fields: {}, partial: true, count: 2 }]);
        } else {
          expect(changes).toHaveLength(2);
          expect(changes).toEqual(
            expect.arrayContaining(
              [3, 4].map((qty, i) => ({
                entity: 'HkCopy',
                id: `${prefix}-${'ab'[i]}`,
                operation: 'insert',
                fields: { code: { from: null, to: `${prefix}-${'ab'[i]}` }, qty: { from: null, to: qty } },
              })),
            ),
          );
        }
        // The app's result is TypeORM's: the key the module asked for is not in it.
        if (kind === 'postgres') expect(result!.raw).toEqual([]);
      });

      it('records each row under the number the select gave it where the database returns rows; elsewhere counts them', async () => {
        const prefix = `num-${mode}`;
        const seeded = await seedOrders(prefix);
        const [a, b] = seeded;
        expect(
          await h.run(mode, () =>
            h.ds
              .createQueryBuilder()
              .insert()
              .into(HkNumbered, ['num', 'label'])
              .valuesFromSelect((select) => select.select('o.id', 'num').addSelect('o.item', 'label').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
              .execute(),
          ),
        ).toEqual(ok);
        expect(await h.ds.getRepository(HkNumbered).countBy({ label: Like(`${prefix}-%`) })).toBe(2);
        const changes = await recorded(mode);
        if (kind === 'postgres') {
          expect(changes).toHaveLength(2);
          expect(changes).toEqual(
            expect.arrayContaining(
              [a!, b!].map((order) => ({ entity: 'HkNumbered', id: String(order.id), operation: 'insert', fields: { num: { from: null, to: order.id }, label: { from: null, to: order.item } } })),
            ),
          );
        } else {
          // SQLite: the numbers given are the rowids; MariaDB: no rows returned, no increment key.
          expect(changes).toEqual([{ entity: 'HkNumbered', id: null, operation: 'insert', fields: {}, partial: true, count: 2 }]);
        }
      });

      it('a rolled-back transaction records nothing', async () => {
        const prefix = `srb-${mode}`;
        await seedOrders(prefix);
        const outcome = await h.run(mode, () =>
          h.ds.transaction(async (manager) => {
            await intoHistory(manager, prefix);
            throw new Error('rolled back');
          }),
        );
        expect(outcome.status ?? (outcome.error as Error).message).toBe(mode === 'handler' ? 500 : 'rolled back');
        expect(await histories().countBy({ note: `${prefix}-a` })).toBe(0);
        expect(await h.changes()).toEqual([]);
        if (mode === 'fallback') expect(await h.t.rows()).toEqual([]);
      });

      it('an insert that does not read values back (updateEntity(false)) records its rows, and returns what TypeORM returns', async () => {
        const prefix = `ue-${mode}`;
        await seedOrders(prefix);
        let result: InsertResult | undefined;
        expect(
          await h.run(mode, async () => {
            result = await h.ds
              .createQueryBuilder()
              .insert()
              .into(HkHistory, ['note', 'n'])
              .valuesFromSelect((select) => select.select('o.item', 'note').addSelect('o.qty', 'n').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
              .updateEntity(false)
              .execute();
          }),
        ).toEqual(ok);
        const rows = await histories().find({ where: [{ note: `${prefix}-a` }, { note: `${prefix}-b` }], order: { id: 'ASC' } });
        const changes = await recorded(mode);
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(expect.arrayContaining(rows.map(historyInserted)));
        // PostgreSQL: no rows (no RETURNING of TypeORM's); SQLite: the last rowid; MariaDB: the server's OK packet.
        if (kind === 'postgres') expect(result!.raw).toEqual([]);
        else if (kind === 'sqlite') expect(result!.raw).toBe(rows[1]!.id);
        else expect(result!.raw).toMatchObject({ affectedRows: 2, insertId: rows[0]!.id });
      });

      it('returns to the app what TypeORM returns (the values it reads back where the database returns rows)', async () => {
        const prefix = `res-${mode}`;
        await seedOrders(prefix);
        let result: InsertResult | undefined;
        expect(
          await h.run(mode, async () => {
            result = await intoHistory(h.ds.manager, prefix);
          }),
        ).toEqual(ok);
        const rows = await histories().find({ where: [{ note: `${prefix}-a` }, { note: `${prefix}-b` }], order: { id: 'ASC' } });
        expect(await h.changes()).toHaveLength(2);
        if (kind === 'sqlite') expect(result!.raw).toBe(rows[1]!.id);
        else expect(result!.raw).toEqual(expect.arrayContaining(rows.map((row) => ({ id: row.id, n: row.n }))));
      });

      it('an insert that skips the rows that conflict records the rows it inserted, exactly where the database tells which', async () => {
        const prefix = `ign-${mode}`;
        await seedOrders(prefix);
        await h.t.seed(() => h.ds.getRepository(HkCopy).save({ code: `${prefix}-a`, qty: 1 }));
        expect(
          await h.run(mode, () =>
            h.ds
              .createQueryBuilder()
              .insert()
              .into(HkCopy, ['code', 'qty'])
              .valuesFromSelect((select) => select.select('o.item', 'code').addSelect('o.qty', 'qty').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
              .orIgnore()
              .execute(),
          ),
        ).toEqual(ok);
        expect((await h.ds.getRepository(HkCopy).findOneByOrFail({ code: `${prefix}-a` })).qty).toBe(1);
        const changes = await recorded(mode);
        expect(changes).toEqual(
          kind === 'mariadb'
            ? [{ entity: 'HkCopy', id: null, operation: 'insert', fields: {}, partial: true, count: 1 }]
            : [{ entity: 'HkCopy', id: `${prefix}-b`, operation: 'insert', fields: { code: { from: null, to: `${prefix}-b` }, qty: { from: null, to: 4 } } }],
        );
      });

      it('an upsert by a select is recorded as one partial insert', async () => {
        const prefix = `ups-${mode}`;
        await seedOrders(prefix);
        await h.t.seed(() => h.ds.getRepository(HkCopy).save({ code: `${prefix}-a`, qty: 1 }));
        expect(
          await h.run(mode, () =>
            h.ds
              .createQueryBuilder()
              .insert()
              .into(HkCopy, ['code', 'qty'])
              .valuesFromSelect((select) => select.select('o.item', 'code').addSelect('o.qty', 'qty').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `${prefix}-%` }))
              .orUpdate(['qty'], ['code'])
              .execute(),
          ),
        ).toEqual(ok);
        expect((await h.ds.getRepository(HkCopy).findOneByOrFail({ code: `${prefix}-a` })).qty).toBe(3);
        expect(await recorded(mode)).toEqual([{ entity: 'HkCopy', id: null, operation: 'insert', fields: {}, partial: true }]);
      });

      it('links inserted by a select into a junction table are recorded as a partial update of the owning entity, with their count', async () => {
        const box = await h.t.seed(() => h.ds.getRepository(HkBox).save({ name: `box-${mode}` }));
        await h.t.seed(() => h.ds.getRepository(HkLabel).save([{ name: `lab-${mode}-1` }, { name: `lab-${mode}-2` }]));
        expect(
          await h.run(mode, () =>
            h.ds
              .createQueryBuilder()
              .insert()
              .into('hk_box_labels', ['hkBoxId', 'hkLabelId'])
              .valuesFromSelect((select) =>
                select
                  .select('b.id', 'hkBoxId')
                  .addSelect('l.id', 'hkLabelId')
                  .from(HkBox, 'b')
                  .innerJoin(HkLabel, 'l', 'l.name LIKE :prefix', { prefix: `lab-${mode}-%` })
                  .where('b.id = :box', { box: box.id }),
              )
              .execute(),
          ),
        ).toEqual(ok);
        const loaded = await h.ds.getRepository(HkBox).findOneOrFail({ where: { id: box.id }, relations: { labels: true } });
        expect(loaded.labels).toHaveLength(2);
        expect(await recorded(mode)).toEqual([{ entity: 'HkBox', id: null, operation: 'update', fields: {}, partial: true, count: 2 }]);
      });

      it('a select that yields no row records nothing', async () => {
        expect(await h.run(mode, () => intoHistory(h.ds.manager, `none-${mode}`))).toEqual(ok);
        expect(await h.changes()).toEqual([]);
      });
    });
  });
});

/** Past `maxCriteriaRows`, the rows of an INSERT … SELECT are counted in one partial change. */
describe.skipIf(!insertsFromSelect).each(databases())('INSERT … SELECT past maxCriteriaRows on %s', (kind) => {
  const h = captureApp(kind, HK_ENTITIES, { maxCriteriaRows: 1 });

  it.each(MODES)('%s: records the first row read back, and counts the others', async (mode) => {
    await h.t.seed(() => h.ds.getRepository(HkOrder).save([1, 2, 3].map((qty) => ({ item: `b-${mode}-${qty}`, qty }))));
    const outcome = await h.run(mode, () =>
      h.ds
        .createQueryBuilder()
        .insert()
        .into(HkHistory, ['note', 'n'])
        .valuesFromSelect((select) => select.select('o.item', 'note').addSelect('o.qty', 'n').from(HkOrder, 'o').where('o.item LIKE :prefix', { prefix: `b-${mode}-%` }))
        .execute(),
    );
    expect(outcome.error).toBeNull();
    const changes = await h.changes();
    expect(changes).toHaveLength(2);
    expect(changes).toContainEqual({ entity: 'HkHistory', id: null, operation: 'insert', fields: {}, partial: true, count: 2 });
    expect(changes).toContainEqual(expect.objectContaining({ entity: 'HkHistory', operation: 'insert', id: expect.any(String) }));
  });
});
