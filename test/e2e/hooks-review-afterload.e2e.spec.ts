import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, InsertQueryBuilder, PrimaryGeneratedColumn, type EntitySubscriberInterface } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';

@Entity('al_item')
class AlItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @Column({ type: 'int', default: 0 }) qty!: number;
}

/** A row the app writes each time it loads an item. */
@Entity('al_view')
class AlView {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) itemId!: number;
}

/** Whether the app's afterLoad hook records a view, for the test running now. */
let recordViews = false;

/** An app's subscriber whose afterLoad writes: it runs when the app loads items, and only then. */
class ViewSubscriber implements EntitySubscriberInterface<AlItem> {
  constructor(private readonly write: (item: AlItem) => Promise<unknown>) {}
  listenTo() {
    return AlItem;
  }
  afterLoad(item: AlItem) {
    if (recordViews) return this.write(item).then(() => undefined);
  }
}

const insertsFromSelect = typeof (InsertQueryBuilder.prototype as { valuesFromSelect?: unknown }).valuesFromSelect === 'function';

/**
 * The rows the module reads to record a write by criteria (before and after it) are not the
 * app's loads: the app's afterLoad hooks are not called for them (nor is what they write made).
 */
describe.each(databases())("the app's afterLoad hooks and the module's reads, on %s", (kind) => {
  const h = captureApp(kind, [AlItem, AlView]);
  beforeAll(() => {
    h.ds.subscribers.unshift(new ViewSubscriber((item) => h.ds.getRepository(AlView).insert({ itemId: item.id })));
  });
  afterEach(() => {
    recordViews = false;
  });
  const items = () => h.ds.getRepository(AlItem);
  const views = () => h.ds.getRepository(AlView);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it.each([
      ['repository.update()', (id: number) => items().update({ id }, { qty: 2 }), 'update'],
      ['repository.delete()', (id: number) => items().delete({ id }), 'delete'],
    ] as const)('%s loads nothing of the app: its afterLoad does not run, only the item\'s change is recorded', async (_write, write, operation) => {
      const item = await h.t.seed(() => items().save({ name: `${operation}-${mode}`, qty: 1 }));
      const viewsBefore = await views().count();
      recordViews = true;
      expect(await h.run(mode, () => write(item.id))).toEqual(ok);
      recordViews = false;
      expect(await views().count()).toBe(viewsBefore);
      const changes = await h.changes();
      expect(changes).toEqual([expect.objectContaining({ entity: 'AlItem', id: String(item.id), operation })]);
    });

    it.skipIf(!insertsFromSelect)('an INSERT … SELECT loads nothing of the app: its afterLoad does not run', async () => {
      const item = await h.t.seed(() => items().save({ name: `sel-${mode}`, qty: 4 }));
      const viewsBefore = await views().count();
      recordViews = true;
      expect(
        await h.run(mode, () =>
          h.ds
            .createQueryBuilder()
            .insert()
            .into(AlItem, ['name', 'qty'])
            .valuesFromSelect((select) => select.select('i.name', 'name').addSelect('i.qty', 'qty').from(AlItem, 'i').where('i.id = :id', { id: item.id }))
            .execute(),
        ),
      ).toEqual(ok);
      recordViews = false;
      expect(await views().count()).toBe(viewsBefore);
      const changes = await h.changes();
      expect(changes).toEqual([expect.objectContaining({ entity: 'AlItem', operation: 'insert' })]);
    });
  });
});
