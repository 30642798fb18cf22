import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_EDGE_ENTITIES, CpsBoard, CpsBook, CpsCode, CpsGroup, CpsItem, CpsPair, CpsShelf } from '../app/capture-scenario/cps-edge-entities.js';
import { databases } from '../support/test-database.js';

/**
 * Unusual but legal TypeORM writes inside one `@Audited` request: each leaves exactly one
 * intent row (no fallback row) whose changes are the net change the write made.
 */
describe.each(databases())('capture of unusual writes on %s', (kind) => {
  const h = captureApp(kind, CPS_EDGE_ENTITIES);
  let serial = 0;

  /** Runs `fn` in the @Audited handler and returns the one intent's changes. */
  async function inHandler(fn: () => Promise<unknown>): Promise<AuditChange[]> {
    const result = await h.run('handler', fn);
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual(['intent:edge.run:success']);
    return rows[0]!.changes ?? [];
  }
  const items = () => h.ds.getRepository(CpsItem);
  const seedItem = (extra: Partial<CpsItem> = {}) =>
    h.t.seed(() => items().save(items().create({ name: `item-${++serial}`, price: '12.50', meta: { colour: 'red', sizes: [1, 2] }, address: { street: 'Main', city: 'Oslo' }, ...extra })));
  const table = (entity: new () => unknown) =>
    h.ds.getMetadata(entity).tablePath.split('.').map((part) => h.ds.driver.escape(part)).join('.');

  it('a save of an entity loaded with its relations and left unchanged records no change', async () => {
    const item = await seedItem();
    const group = await h.t.seed(() => h.ds.getRepository(CpsGroup).save({ title: `g-${++serial}`, items: [item] }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsGroup).findOneOrFail({ where: { id: group.id }, relations: { items: true } });
      await h.ds.getRepository(CpsGroup).save(loaded);
      const again = await items().findOneByOrFail({ id: item.id });
      await items().save(again);
    });
    expect(changes).toEqual([]);
  });

  it('a simple-json value changed in place records its before and after value', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.meta!.colour = 'blue';
      loaded.meta!.sizes.push(3);
      await items().save(loaded);
    });
    expect((await items().findOneByOrFail({ id: item.id })).meta).toEqual({ colour: 'blue', sizes: [1, 2, 3] });
    expect(changes).toEqual([
      { entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { meta: { from: { colour: 'red', sizes: [1, 2] }, to: { colour: 'blue', sizes: [1, 2, 3] } } } },
    ]);
  });

  it('a date column given the same instant as a new Date object records nothing', async () => {
    const item = await seedItem({ releasedAt: new Date('2026-03-04T05:06:07.000Z') });
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.releasedAt = new Date(loaded.releasedAt!.getTime());
      await items().save(loaded);
    });
    expect(changes).toEqual([]);
  });

  it('a decimal column changed records the values given; an unchanged one is no change', async () => {
    const item = await seedItem();
    const before = await items().findOneByOrFail({ id: item.id });
    const next = (typeof before.price === 'string' ? '13.25' : 13.25) as string;
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.price = next;
      await items().save(loaded);
    });
    expect(changes).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { price: { from: before.price, to: next } } }]);
  });

  it('version and update-date columns are not in the changes of a save', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.name = `${loaded.name}-renamed`;
      await items().save(loaded);
    });
    expect((await items().findOneByOrFail({ id: item.id })).version).toBe(2);
    expect(changes).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { name: { from: item.name, to: `${item.name}-renamed` } } }]);
  });

  it('a select:false column: left out of a load and save it is not a change; set, it is recorded with its stored before value', async () => {
    const item = await seedItem();
    const untouched = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.stock = 4;
      await items().save(loaded);
    });
    expect(untouched).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { stock: { from: 0, to: 4 } } }]);
    await h.t.clearAudit();
    const changed = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.note = 'restocked';
      await items().save(loaded);
    });
    expect(changed).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { note: { from: 'internal', to: 'restocked' } } }]);
  });

  it('an embedded column changed records that column as <embedded>.<column>', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.address.city = 'Bergen';
      await items().save(loaded);
    });
    expect(changes).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { 'address.city': { from: 'Oslo', to: 'Bergen' } } }]);
  });

  it('update() by criteria records each row with its before value, without version or update date', async () => {
    const a = await seedItem({ name: `crit-${serial}-a` });
    const b = await seedItem({ name: `crit-${serial}-b`, stock: 2 });
    const changes = await inHandler(() => items().update({ id: a.id }, { stock: 9, address: { city: 'Rome' } }).then(() => items().update({ id: b.id }, { stock: 9 })));
    expect(changes.sort((x, y) => Number(x.id) - Number(y.id))).toEqual([
      { entity: 'CpsItem', id: String(a.id), operation: 'update', fields: { stock: { from: 0, to: 9 }, 'address.city': { from: 'Oslo', to: 'Rome' } } },
      { entity: 'CpsItem', id: String(b.id), operation: 'update', fields: { stock: { from: 2, to: 9 } } },
    ]);
  });

  it('delete() by criteria records every followed field, the select:false one included', async () => {
    const item = await seedItem();
    const changes = await inHandler(() => items().delete({ name: item.name }));
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'CpsItem', id: String(item.id), operation: 'delete' });
    const fields = changes[0]!.fields;
    expect(fields['name']).toEqual({ from: item.name, to: null });
    expect(fields['note']).toEqual({ from: 'internal', to: null });
    expect(fields['address.city']).toEqual({ from: 'Oslo', to: null });
    expect(fields['meta']).toEqual({ from: { colour: 'red', sizes: [1, 2] }, to: null });
    expect(fields['version']).toBeUndefined();
    expect(fields['updatedAt']).toBeUndefined();
  });

  it('query-builder update with and without returning records the rows changed', async () => {
    const a = await seedItem();
    const b = await seedItem();
    const changes = await inHandler(async () => {
      const first = h.ds.createQueryBuilder().update(CpsItem).set({ stock: () => 'stock + 5' }).where('id = :id', { id: a.id });
      if (kind === 'postgres') first.returning(['id', 'stock']);
      await first.execute();
      await h.ds.createQueryBuilder().update(CpsItem).set({ name: 'qb-name' }).where('id = :id', { id: b.id }).execute();
    });
    expect(changes.sort((x, y) => Number(x.id) - Number(y.id))).toEqual([
      { entity: 'CpsItem', id: String(a.id), operation: 'update', fields: { stock: { from: 0, to: 5 } } },
      { entity: 'CpsItem', id: String(b.id), operation: 'update', fields: { name: { from: b.name, to: 'qb-name' } } },
    ]);
  });

  it('query-builder insert of several rows, and a delete, are recorded row by row', async () => {
    const changes = await inHandler(async () => {
      const insert = h.ds.createQueryBuilder().insert().into(CpsItem).values([{ name: 'qb-1' }, { name: 'qb-2' }]);
      if (kind === 'postgres') insert.returning(['id']);
      await insert.execute();
      await h.ds.createQueryBuilder().delete().from(CpsItem).where('name = :n', { n: 'qb-1' }).execute();
    });
    const qb2 = await items().findOneByOrFail({ name: 'qb-2' });
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'CpsItem', id: String(qb2.id), operation: 'insert' });
    expect(changes[0]!.fields['name']).toEqual({ from: null, to: 'qb-2' });
    expect(changes[0]!.fields['stock']).toEqual({ from: null, to: 0 });
  });

  it('upsert() records an insert for a new key and an update with its before value for an existing one', async () => {
    await h.t.seed(() => h.ds.getRepository(CpsPair).save({ left: 1, right: 1, label: 'one' }));
    const changes = await inHandler(() =>
      h.ds.getRepository(CpsPair).upsert([{ left: 1, right: 1, label: 'uno' }, { left: 1, right: 2, label: 'dos' }], ['left', 'right']),
    );
    expect(changes.sort((x, y) => String(x.id).localeCompare(String(y.id)))).toEqual([
      { entity: 'CpsPair', id: JSON.stringify({ left: 1, right: 1 }), operation: 'update', fields: { label: { from: 'one', to: 'uno' } } },
      { entity: 'CpsPair', id: JSON.stringify({ left: 1, right: 2 }), operation: 'insert', fields: { left: { from: null, to: 1 }, right: { from: null, to: 2 }, label: { from: null, to: 'dos' } } },
    ]);
  });

  it('a composite-key entity saved with a changed column records the update under its key', async () => {
    await h.t.seed(() => h.ds.getRepository(CpsPair).save({ left: 7, right: 8, label: 'x' }));
    const changes = await inHandler(async () => {
      const pair = await h.ds.getRepository(CpsPair).findOneByOrFail({ left: 7, right: 8 });
      pair.label = 'y';
      await h.ds.getRepository(CpsPair).save(pair);
    });
    expect(changes).toEqual([{ entity: 'CpsPair', id: JSON.stringify({ left: 7, right: 8 }), operation: 'update', fields: { label: { from: 'x', to: 'y' } } }]);
  });

  it('softRemove and recover record the delete-date column only', async () => {
    const item = await seedItem();
    const removed = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      await items().softRemove(loaded);
    });
    expect(removed).toHaveLength(1);
    expect(removed[0]).toMatchObject({ entity: 'CpsItem', id: String(item.id), operation: 'update' });
    expect(Object.keys(removed[0]!.fields)).toEqual(['deletedAt']);
    expect((removed[0]!.fields['deletedAt'] as { from: unknown }).from).toBeNull();
    await h.t.clearAudit();
    const recovered = await inHandler(async () => {
      const loaded = await items().findOneOrFail({ where: { id: item.id }, withDeleted: true });
      await items().recover(loaded);
    });
    expect(recovered).toHaveLength(1);
    expect(Object.keys(recovered[0]!.fields)).toEqual(['deletedAt']);
    expect((recovered[0]!.fields['deletedAt'] as { to: unknown }).to).toBeNull();
  });

  it('increment() records the column’s before and after value', async () => {
    const item = await seedItem({ stock: 10 });
    const changes = await inHandler(() => items().increment({ id: item.id }, 'stock', 3));
    expect(changes).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { stock: { from: 10, to: 13 } } }]);
  });

  it('a many-to-many with custom join column names records links added and removed', async () => {
    const a = await seedItem();
    const b = await seedItem();
    const c = await seedItem();
    const group = await h.t.seed(() => h.ds.getRepository(CpsGroup).save({ title: `g-${++serial}`, items: [a, b] }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsGroup).findOneOrFail({ where: { id: group.id }, relations: { items: true } });
      loaded.items = [loaded.items.find((i) => i.id === b.id)!, c];
      await h.ds.getRepository(CpsGroup).save(loaded);
    });
    expect(changes).toEqual([{ entity: 'CpsGroup', id: String(group.id), operation: 'update', fields: { items: { added: [String(c.id)], removed: [String(a.id)] } } }]);
  });

  it('deleting a linked row by criteria records its removal from the owning side of a custom join table', async () => {
    const a = await seedItem();
    const group = await h.t.seed(() => h.ds.getRepository(CpsGroup).save({ title: `g-${++serial}`, items: [a] }));
    const changes = await inHandler(() => items().delete(a.id));
    const keys = changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort();
    expect(keys).toEqual([`CpsGroup:${group.id}:update`, `CpsItem:${a.id}:delete`]);
    expect(changes.find((c) => c.entity === 'CpsGroup')!.fields).toEqual({ items: { added: [], removed: [String(a.id)] } });
  });

  it('raw manager.query UPDATE in a request is one partial change of the entity', async () => {
    const item = await seedItem();
    const changes = await inHandler(() => h.ds.manager.query(`UPDATE ${table(CpsItem)} SET stock = stock + 1 WHERE id = ${item.id}`));
    expect(changes).toEqual([{ entity: 'CpsItem', id: null, operation: 'update', fields: {}, partial: true }]);
  });

  it('raw SQL on a custom join table is a partial update of the owning entity', async () => {
    const a = await seedItem();
    const group = await h.t.seed(() => h.ds.getRepository(CpsGroup).save({ title: `g-${++serial}`, items: [] }));
    const changes = await inHandler(() => h.ds.manager.query(`INSERT INTO ${table(CpsGroup).replace(/cps_group/, 'cps_group_members')} (grp_ref, itm_ref) VALUES (${group.id}, ${a.id})`));
    expect(changes).toEqual([{ entity: 'CpsGroup', id: null, operation: 'update', fields: {}, partial: true }]);
  });
  it('an insert followed by an update by criteria and an increment is one insert with the final values', async () => {
    let id = 0;
    const changes = await inHandler(async () => {
      const saved = await items().save(items().create({ name: 'merge-insert', price: '1.00' }));
      id = saved.id;
      await items().update({ id }, { name: 'merged' });
      await items().increment({ id }, 'stock', 2);
    });
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'CpsItem', id: String(id), operation: 'insert' });
    expect(changes[0]!.fields['name']).toEqual({ from: null, to: 'merged' });
    expect(changes[0]!.fields['stock']).toEqual({ from: null, to: 2 });
  });

  it('an update followed by a delete is one delete from the values the request started with', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      await items().update({ id: item.id }, { name: 'changed-first', stock: 3 });
      await items().delete({ id: item.id });
    });
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'CpsItem', id: String(item.id), operation: 'delete' });
    expect(changes[0]!.fields['name']).toEqual({ from: item.name, to: null });
    expect(changes[0]!.fields['stock']).toEqual({ from: 0, to: null });
  });

  it('a soft remove and a recover in one request are no change', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      await items().softRemove(loaded);
      await items().recover(loaded);
    });
    expect(changes).toEqual([]);
  });

  it('softDelete and restore by criteria record the delete-date column', async () => {
    const item = await seedItem();
    const deleted = await inHandler(() => items().softDelete({ id: item.id }));
    expect(deleted).toHaveLength(1);
    expect(Object.keys(deleted[0]!.fields)).toEqual(['deletedAt']);
    await h.t.clearAudit();
    const restored = await inHandler(() => items().restore({ id: item.id }));
    expect(restored).toHaveLength(1);
    expect(Object.keys(restored[0]!.fields)).toEqual(['deletedAt']);
    expect((restored[0]!.fields['deletedAt'] as { to: unknown }).to).toBeNull();
  });

  it('a simple-array-like json list pushed in place and an embedded field in one save are one update', async () => {
    const item = await seedItem();
    const changes = await inHandler(async () => {
      const loaded = await items().findOneByOrFail({ id: item.id });
      loaded.meta!.sizes.push(9);
      loaded.address.street = 'Side';
      await items().save(loaded);
      loaded.meta!.sizes.pop();
      await items().save(loaded);
    });
    expect(changes).toEqual([{ entity: 'CpsItem', id: String(item.id), operation: 'update', fields: { 'address.street': { from: 'Main', to: 'Side' } } }]);
  });

  it('upsert with skipUpdateIfNoValuesChanged leaves an unchanged row out', async () => {
    await h.t.seed(() => h.ds.getRepository(CpsPair).save({ left: 30, right: 1, label: 'same' }));
    const changes = await inHandler(() =>
      h.ds.getRepository(CpsPair).upsert([{ left: 30, right: 1, label: 'same' }], { conflictPaths: ['left', 'right'], skipUpdateIfNoValuesChanged: true }),
    );
    expect(changes).toEqual([]);
  });

  it('an insert by query builder with orUpdate records the insert and the update', async () => {
    await h.t.seed(() => h.ds.getRepository(CpsPair).save({ left: 40, right: 1, label: 'before' }));
    const changes = await inHandler(() =>
      h.ds.createQueryBuilder().insert().into(CpsPair).values([{ left: 40, right: 1, label: 'after' }, { left: 40, right: 2, label: 'new' }]).orUpdate(['label'], ['left', 'right']).execute(),
    );
    expect(changes.sort((x, y) => String(x.id).localeCompare(String(y.id)))).toEqual([
      { entity: 'CpsPair', id: JSON.stringify({ left: 40, right: 1 }), operation: 'update', fields: { label: { from: 'before', to: 'after' } } },
      { entity: 'CpsPair', id: JSON.stringify({ left: 40, right: 2 }), operation: 'insert', fields: { left: { from: null, to: 40 }, right: { from: null, to: 2 }, label: { from: null, to: 'new' } } },
    ]);
  });
  it('a many-to-many joined on non-key columns records the links under the rows’ primary keys', async () => {
    const [b1, b2] = await h.t.seed(() => h.ds.getRepository(CpsBook).save([{ isbn: `isbn-${++serial}` }, { isbn: `isbn-${++serial}` }]));
    const shelf = await h.t.seed(() => h.ds.getRepository(CpsShelf).save({ code: `shelf-${++serial}`, books: [b1!] }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsShelf).findOneOrFail({ where: { id: shelf.id }, relations: { books: true } });
      loaded.books = [b2!];
      await h.ds.getRepository(CpsShelf).save(loaded);
    });
    // What the database holds afterwards (TypeORM keeps b1's link here: it compares such links by key).
    const stored = (await h.ds.getRepository(CpsShelf).findOneOrFail({ where: { id: shelf.id }, relations: { books: true } })).books.map((b) => b.id);
    const removed = [b1!.id].filter((id) => !stored.includes(id)).map(String);
    expect(changes).toEqual([{ entity: 'CpsShelf', id: String(shelf.id), operation: 'update', fields: { books: { added: [String(b2!.id)], removed } } }]);
    const history = await h.t.audit.history({ type: 'CpsBook', id: b2!.id });
    expect(history).toHaveLength(1);
  });

  it('a shelf joined on non-key columns, inserted with a book, is one insert under its primary key', async () => {
    const book = await h.t.seed(() => h.ds.getRepository(CpsBook).save({ isbn: `isbn-${++serial}` }));
    let id = 0;
    const changes = await inHandler(async () => {
      id = (await h.ds.getRepository(CpsShelf).save({ code: `shelf-${++serial}`, books: [book] })).id;
    });
    expect(changes, JSON.stringify(changes)).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'CpsShelf', id: String(id), operation: 'insert' });
    expect(changes[0]!.fields['books']).toEqual({ added: [String(book.id)], removed: [] });
  });

  it('deleting a book joined on non-key columns records the link removed from its shelf under the shelf’s key', async () => {
    const book = await h.t.seed(() => h.ds.getRepository(CpsBook).save({ isbn: `isbn-${++serial}` }));
    const shelf = await h.t.seed(() => h.ds.getRepository(CpsShelf).save({ code: `shelf-${++serial}`, books: [book] }));
    const changes = await inHandler(() => h.ds.getRepository(CpsBook).delete(book.id));
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual([`CpsBook:${book.id}:delete`, `CpsShelf:${shelf.id}:update`]);
    expect(changes.find((c) => c.entity === 'CpsShelf')!.fields).toEqual({ books: { added: [], removed: [String(book.id)] } });
  });
  it('a save and an update by criteria of one text-keyed row, given its key in another case, are one change under the stored key', async () => {
    const codes = h.ds.getRepository(CpsCode);
    await h.t.seed(() => codes.save({ code: 'abc', label: 'one' }));
    const changes = await inHandler(async () => {
      const found = await codes.findOneBy({ code: 'ABC' });
      if (!found) return; // a database that compares keys by case has no such row
      found.label = 'two';
      await codes.save(found);
      await codes.update({ code: 'ABC' }, { label: 'three' });
    });
    const stored = await codes.find();
    const label = stored.find((row) => row.code === 'abc')!.label;
    expect(changes).toEqual(label === 'one' ? [] : [{ entity: 'CpsCode', id: 'abc', operation: 'update', fields: { label: { from: 'one', to: label } } }]);
  });
  it('query-builder writes with RETURNING, wherever the database has it, are recorded and return only what the app asked for', async () => {
    const driver = h.ds.driver;
    const a = await seedItem();
    const b = await seedItem();
    let inserted: unknown;
    let updated: unknown;
    let deleted: unknown;
    const changes = await inHandler(async () => {
      const insert = h.ds.createQueryBuilder().insert().into(CpsItem).values({ name: 'ret-insert' }).updateEntity(false);
      if (driver.isReturningSqlSupported('insert')) insert.returning(['name']);
      inserted = (await insert.execute()).raw;
      const update = h.ds.createQueryBuilder().update(CpsItem).set({ stock: 7 }).where('id = :id', { id: a.id });
      if (driver.isReturningSqlSupported('update')) update.returning(['stock']);
      updated = (await update.execute()).raw;
      const del = h.ds.createQueryBuilder().delete().from(CpsItem).where('id = :id', { id: b.id });
      if (driver.isReturningSqlSupported('delete')) del.returning(['name']);
      deleted = (await del.execute()).raw;
    });
    if (driver.isReturningSqlSupported('insert')) expect(inserted).toEqual([{ name: 'ret-insert' }]);
    if (driver.isReturningSqlSupported('update')) expect(updated).toEqual([{ stock: 7 }]);
    if (driver.isReturningSqlSupported('delete')) expect(deleted).toEqual([{ name: b.name }]);
    const id = String((await items().findOneByOrFail({ name: 'ret-insert' })).id);
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual([`CpsItem:${a.id}:update`, `CpsItem:${b.id}:delete`, `CpsItem:${id}:insert`].sort());
    expect(changes.find((c) => c.operation === 'update')!.fields).toEqual({ stock: { from: 0, to: 7 } });
  });
  it('links to a composite-key entity are recorded under each pair’s own key, whatever the join columns’ order', async () => {
    const pairs = h.ds.getRepository(CpsPair);
    const [p1, p2] = await h.t.seed(() => pairs.save([{ left: 51, right: 52, label: 'p1' }, { left: 61, right: 62, label: 'p2' }]));
    const board = await h.t.seed(() => h.ds.getRepository(CpsBoard).save({ pairs: [p1!] }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsBoard).findOneOrFail({ where: { id: board.id }, relations: { pairs: true } });
      loaded.pairs = [p2!];
      await h.ds.getRepository(CpsBoard).save(loaded);
    });
    const key = (p: CpsPair) => JSON.stringify({ left: p.left, right: p.right });
    expect(changes).toEqual([{ entity: 'CpsBoard', id: String(board.id), operation: 'update', fields: { pairs: { added: [key(p2!)], removed: [key(p1!)] } } }]);
    expect(await h.t.audit.history({ type: 'CpsPair', id: key(p2!) })).toHaveLength(1);
  });

  it('deleting a composite-key entity records the link removed from the board under the pair’s key', async () => {
    const pairs = h.ds.getRepository(CpsPair);
    const p = await h.t.seed(() => pairs.save({ left: 71, right: 72, label: 'p' }));
    const board = await h.t.seed(() => h.ds.getRepository(CpsBoard).save({ pairs: [p] }));
    const changes = await inHandler(() => pairs.delete({ left: 71, right: 72 }));
    const key = JSON.stringify({ left: 71, right: 72 });
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual([`CpsBoard:${board.id}:update`, `CpsPair:${key}:delete`].sort());
    expect(changes.find((c) => c.entity === 'CpsBoard')!.fields).toEqual({ pairs: { added: [], removed: [key] } });
  });
});
