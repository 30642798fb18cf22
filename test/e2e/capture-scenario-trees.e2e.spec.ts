import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_TREE_ENTITIES, CpsCategory, CpsSection } from '../app/capture-scenario/cps-tree-entities.js';
import { databases } from '../support/test-database.js';

/** TypeORM tree entities: a node saved under a parent is one insert of that node, with its parent. */
describe.each(databases())('capture of tree entities on %s', (kind) => {
  const h = captureApp(kind, CPS_TREE_ENTITIES);

  async function inHandler(fn: () => Promise<unknown>): Promise<AuditChange[]> {
    const result = await h.run('handler', fn);
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual(['intent:edge.run:success']);
    return rows[0]!.changes ?? [];
  }

  it('a closure-table node saved under a parent is one insert with its parent', async () => {
    const root = await h.t.seed(() => h.ds.getRepository(CpsCategory).save({ name: 'root' }));
    let id = 0;
    const changes = await inHandler(async () => {
      id = (await h.ds.getRepository(CpsCategory).save({ name: 'leaf', parent: root })).id;
    });
    expect(changes, JSON.stringify(changes)).toEqual([
      { entity: 'CpsCategory', id: String(id), operation: 'insert', fields: { id: { from: null, to: id }, name: { from: null, to: 'leaf' }, parent: { from: null, to: root.id } } },
    ]);
  });

  it('a materialized-path node saved under a parent is one insert with its parent', async () => {
    const root = await h.t.seed(() => h.ds.getRepository(CpsSection).save({ name: 'root' }));
    let id = 0;
    const changes = await inHandler(async () => {
      id = (await h.ds.getRepository(CpsSection).save({ name: 'leaf', parent: root })).id;
    });
    expect(changes.map((c) => `${c.entity}:${c.id}:${c.operation}`), JSON.stringify(changes)).toEqual([`CpsSection:${id}:insert`]);
    expect(changes[0]!.fields['parent']).toEqual({ from: null, to: root.id });
  });

  it('a closure-table node moved to another parent is one update of its parent', async () => {
    const a = await h.t.seed(() => h.ds.getRepository(CpsCategory).save({ name: 'a' }));
    const b = await h.t.seed(() => h.ds.getRepository(CpsCategory).save({ name: 'b' }));
    const leaf = await h.t.seed(() => h.ds.getRepository(CpsCategory).save({ name: 'moving', parent: a }));
    const changes = await inHandler(async () => {
      const loaded = await h.ds.getRepository(CpsCategory).findOneByOrFail({ id: leaf.id });
      loaded.parent = b;
      await h.ds.getRepository(CpsCategory).save(loaded);
    });
    expect(changes, JSON.stringify(changes)).toEqual([{ entity: 'CpsCategory', id: String(leaf.id), operation: 'update', fields: { parent: { from: a.id, to: b.id } } }]);
  });
});
