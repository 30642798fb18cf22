import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, InsertQueryBuilder, PrimaryGeneratedColumn, type EntitySubscriberInterface } from 'typeorm';
import { AuditExclude } from '../../lib/index.js';
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

/** An item with a column TypeORM does not select (`select: false`): the module reads its stored value itself. */
@Entity('al_secret_item')
class AlSecretItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @Column({ type: 'varchar', length: 40, select: false, nullable: true }) secret?: string | null;
}

/** The same item, not audited: what TypeORM alone loads of it. */
@Entity('al_secret_plain')
@AuditExclude()
class AlSecretPlain {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @Column({ type: 'varchar', length: 40, select: false, nullable: true }) secret?: string | null;
}

/** The app's afterLoad calls of each of those entities. */
const loads = new Map<string, number>();
class LoadCounter implements EntitySubscriberInterface {
  afterLoad(entity: object) {
    const name = entity.constructor.name;
    loads.set(name, (loads.get(name) ?? 0) + 1);
  }
}

const insertsFromSelect = typeof (InsertQueryBuilder.prototype as { valuesFromSelect?: unknown }).valuesFromSelect === 'function';

/**
 * The rows the module reads to record a write by criteria (before and after it) are not the
 * app's loads: the app's afterLoad hooks are not called for them (nor is what they write made).
 */
describe.each(databases())("the app's afterLoad hooks and the module's reads, on %s", (kind) => {
  const h = captureApp(kind, [AlItem, AlView, AlSecretItem, AlSecretPlain]);
  beforeAll(() => {
    h.ds.subscribers.unshift(new ViewSubscriber((item) => h.ds.getRepository(AlView).insert({ itemId: item.id })));
    h.ds.subscribers.unshift(new LoadCounter());
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

    it.each([
      ['save() setting a select: false column', async (target: typeof AlSecretItem | typeof AlSecretPlain, id: number) => {
        const repository = h.ds.getRepository(target);
        const row = await repository.findOneByOrFail({ id });
        row.secret = 'changed';
        row.name = 'renamed';
        loads.clear();
        await repository.save(row);
      }],
      ['remove()', async (target: typeof AlSecretItem | typeof AlSecretPlain, id: number) => {
        const repository = h.ds.getRepository(target);
        const row = await repository.findOneByOrFail({ id });
        loads.clear();
        await repository.remove(row);
      }],
    ] as const)("%s of an entity with a select: false column calls the app's afterLoad as often as without the module", async (_write, write) => {
      const audited = await h.t.seed(() => h.ds.getRepository(AlSecretItem).save({ name: `s-${mode}`, secret: 'kept' }));
      const plain = await h.t.seed(() => h.ds.getRepository(AlSecretPlain).save({ name: `s-${mode}`, secret: 'kept' }));
      expect(await h.run(mode, () => write(AlSecretPlain, plain.id))).toEqual(ok);
      const withoutModule = loads.get('AlSecretPlain') ?? 0;
      expect(await h.run(mode, () => write(AlSecretItem, audited.id))).toEqual(ok);
      expect(loads.get('AlSecretItem') ?? 0).toBe(withoutModule);
      expect((await h.changes()).filter((change) => change.entity === 'AlSecretItem')).toHaveLength(1);
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
