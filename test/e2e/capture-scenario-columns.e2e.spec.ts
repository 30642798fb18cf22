import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_COLUMN_ENTITIES, CpsDoc, CpsLabel, CpsNote, CpsOwner } from '../app/capture-scenario/cps-column-entities.js';
import { databases } from '../support/test-database.js';

/**
 * Column shapes common in real apps — an explicit foreign-key column beside its relation,
 * lazy relations, transformed columns, JSON and dates written by criteria — each inside one
 * `@Audited` request.
 */
describe.each(databases())('capture of column shapes on %s', (kind) => {
  const h = captureApp(kind, CPS_COLUMN_ENTITIES);
  let serial = 0;

  async function inHandler(fn: () => Promise<unknown>): Promise<AuditChange[]> {
    const result = await h.run('handler', fn);
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual(['intent:edge.run:success']);
    return rows[0]!.changes ?? [];
  }
  const docs = () => h.ds.getRepository(CpsDoc);
  const owner = () => h.t.seed(() => h.ds.getRepository(CpsOwner).save({ name: `o${++serial}` }));
  const doc = (extra: Partial<CpsDoc> = {}) => h.t.seed(() => docs().save(docs().create({ title: `d${++serial}`, ...extra })));

  it('an explicit foreign-key column changed by save records the move once, with from and to', async () => {
    const a = await owner();
    const b = await owner();
    const d = await doc({ ownerId: a.id });
    const changes = await inHandler(async () => {
      const loaded = await docs().findOneByOrFail({ id: d.id });
      loaded.ownerId = b.id;
      await docs().save(loaded);
    });
    expect((await docs().findOneByOrFail({ id: d.id })).ownerId).toBe(b.id);
    expect(changes).toHaveLength(1);
    const fields = changes[0]!.fields as Record<string, { from: unknown; to: unknown }>;
    const moved = Object.entries(fields).filter(([, v]) => v.from === a.id && v.to === b.id);
    expect(moved.length, JSON.stringify(changes)).toBeGreaterThan(0);
    // No field claims the owner stayed, or moved elsewhere.
    for (const [name, value] of Object.entries(fields)) expect({ name, ...value }).toEqual({ name, from: a.id, to: b.id });
  });

  it('an explicit foreign-key column set on insert records the owner once, consistently', async () => {
    const a = await owner();
    const changes = await inHandler(() => docs().save(docs().create({ title: 'fk-insert', ownerId: a.id })));
    expect(changes).toHaveLength(1);
    const fields = changes[0]!.fields as Record<string, { from: unknown; to: unknown }>;
    expect(fields['ownerId'] ?? fields['owner']).toEqual({ from: null, to: a.id });
    if (fields['owner'] && fields['ownerId']) expect(fields['owner']).toEqual(fields['ownerId']);
  });

  it('a lazy to-one relation set by save is recorded as the related id', async () => {
    const a = await owner();
    const d = await doc();
    const changes = await inHandler(async () => {
      const loaded = await docs().findOneByOrFail({ id: d.id });
      loaded.reviewer = Promise.resolve(a);
      await docs().save(loaded);
    });
    expect((await (await docs().findOneByOrFail({ id: d.id })).reviewer)?.id).toBe(a.id);
    expect(changes).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { reviewer: { from: null, to: a.id } } }]);
  });

  it('a lazy many-to-many set by save records the links added', async () => {
    const l1 = await h.t.seed(() => h.ds.getRepository(CpsLabel).save({ name: 'l1' }));
    const d = await doc();
    const changes = await inHandler(async () => {
      const loaded = await docs().findOneByOrFail({ id: d.id });
      loaded.labels = Promise.resolve([l1]);
      await docs().save(loaded);
    });
    expect((await (await docs().findOneByOrFail({ id: d.id })).labels).map((l) => l.id)).toEqual([l1.id]);
    expect(changes).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { labels: { added: [String(l1.id)], removed: [] } } }]);
  });

  it('a transformed column records app values the same way by save and by criteria', async () => {
    const d = await doc({ amount: 1.5 });
    const bySave = await inHandler(async () => {
      const loaded = await docs().findOneByOrFail({ id: d.id });
      loaded.amount = 2.25;
      await docs().save(loaded);
    });
    expect(bySave).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { amount: { from: 1.5, to: 2.25 } } }]);
    await h.t.clearAudit();
    const byCriteria = await inHandler(() => docs().update({ id: d.id }, { amount: 3 }));
    expect(byCriteria).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { amount: { from: 2.25, to: 3 } } }]);
  });

  it('a simple-json value and a date written by criteria are recorded as values, and the same instant is no change', async () => {
    const due = new Date('2026-05-06T07:08:09.000Z');
    const d = await doc({ meta: { a: 1 }, dueAt: due });
    const changes = await inHandler(() => docs().update({ id: d.id }, { meta: { a: 2 }, dueAt: new Date(due.getTime()) }));
    expect(changes).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { meta: { from: { a: 1 }, to: { a: 2 } } } }]);
    await h.t.clearAudit();
    const later = new Date('2026-05-07T07:08:09.000Z');
    const moved = await inHandler(() => docs().update({ id: d.id }, { dueAt: later }));
    expect(moved).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { dueAt: { from: due.toISOString(), to: later.toISOString() } } }]);
  });

  it('a write in a transaction the handler rolls back is in no change', async () => {
    const d = await doc();
    const changes = await inHandler(async () => {
      await h.ds
        .transaction(async (manager) => {
          await manager.update(CpsDoc, { id: d.id }, { title: 'rolled back' });
          await manager.save(CpsDoc, { title: 'never' });
          throw new Error('undo');
        })
        .catch(() => undefined);
    });
    expect((await docs().findOneByOrFail({ id: d.id })).title).toBe(d.title);
    expect(changes).toEqual([]);
  });

  it('deleting a label records its removal from the documents that linked it (one-way many-to-many)', async () => {
    const l = await h.t.seed(() => h.ds.getRepository(CpsLabel).save({ name: 'gone' }));
    const d = await doc();
    await h.t.seed(() => docs().createQueryBuilder().relation(CpsDoc, 'labels').of(d).add(l));
    const changes = await inHandler(() => h.ds.getRepository(CpsLabel).delete(l.id));
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual([`CpsDoc:${d.id}:update`, `CpsLabel:${l.id}:delete`]);
    expect(changes.find((c) => c.entity === 'CpsDoc')!.fields).toEqual({ labels: { added: [], removed: [String(l.id)] } });
  });
  it('columns an entity listener sets during a save are recorded with the save', async () => {
    const o = await owner();
    const note = await h.t.seed(() => h.ds.getRepository(CpsNote).save(h.ds.getRepository(CpsNote).create({ title: 'First Title', owner: o })));
    expect(note.slug).toBe('first-title');
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsNote).findOneOrFail({ where: { id: note.id }, relations: { owner: true } });
      loaded.title = 'Second Title';
      loaded.owner = null;
      await h.ds.getRepository(CpsNote).save(loaded);
    });
    const stored = await h.ds.getRepository(CpsNote).findOneOrFail({ where: { id: note.id }, relations: { owner: true } });
    expect(stored).toMatchObject({ slug: 'second-title', owner: null });
    expect(changes).toEqual([
      {
        entity: 'CpsNote',
        id: String(note.id),
        operation: 'update',
        fields: {
          title: { from: 'First Title', to: 'Second Title' },
          slug: { from: 'first-title', to: 'second-title' },
          updated: { from: null, to: stored.updated!.toISOString() },
          owner: { from: o.id, to: null },
        },
      },
    ]);
  });

  it('writes through a query runner the handler commits by hand are recorded; those it rolls back are not', async () => {
    const d = await doc();
    const changes = await inHandler(async () => {
      const runner = h.ds.createQueryRunner();
      try {
        await runner.connect();
        await runner.startTransaction();
        await runner.manager.update(CpsDoc, { id: d.id }, { title: 'by runner' });
        await runner.commitTransaction();
        await runner.startTransaction();
        await runner.manager.update(CpsDoc, { id: d.id }, { title: 'undone' });
        await runner.rollbackTransaction();
      } finally {
        await runner.release();
      }
    });
    expect(changes).toEqual([{ entity: 'CpsDoc', id: String(d.id), operation: 'update', fields: { title: { from: d.title, to: 'by runner' } } }]);
  });

  it('update() by a list of ids records each row', async () => {
    const a = await doc();
    const b = await doc();
    const changes = await inHandler(() => docs().update([a.id, b.id], { title: 'listed' }));
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual([`CpsDoc:${a.id}:update`, `CpsDoc:${b.id}:update`].sort());
  });
});
