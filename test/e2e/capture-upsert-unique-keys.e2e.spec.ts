import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureCasesApp } from '../app/capture-upsert-harness.js';
import { CapKv } from '../app/capture-upsert-entities.js';

/**
 * MySQL/MariaDB's `ON DUPLICATE KEY UPDATE` updates the row whichever unique key the new
 * values collide with; it takes no conflict target. An existing row updated this way is
 * recorded as an update with its before values, not as the insert of a new row.
 */
describe.each(databases().filter((kind) => kind === 'mariadb'))('ON DUPLICATE KEY UPDATE on %s', (kind) => {
  const h = captureCasesApp(kind);

  describe.each(MODES)('%s', (mode) => {
    it('insert().orUpdate([v]) without a conflict target that updates an existing row records an update', async () => {
      const key = `nt-${mode}`;
      const existing = await h.t.seed(() => h.ds.getRepository(CapKv).save({ k: key, v: '1' }));
      const result = await h.run(mode, () => h.ds.getRepository(CapKv).createQueryBuilder().insert().values({ k: key, v: '2' }).orUpdate(['v']).execute());
      expect(result.error).toBeNull();
      expect(await h.ds.getRepository(CapKv).findBy({ k: key })).toEqual([{ id: existing.id, k: key, v: '2' }]);
      expect(await h.changes()).toEqual([{ entity: 'CapKv', id: String(existing.id), operation: 'update', fields: { v: { from: '1', to: '2' } } }]);
    });

    it('upsert(values, [k]) that collides on the primary key updates that row: recorded as an update', async () => {
      const existing = await h.t.seed(() => h.ds.getRepository(CapKv).save({ k: `a-${mode}`, v: '1' }));
      const result = await h.run(mode, () => h.ds.getRepository(CapKv).upsert({ id: existing.id, k: `b-${mode}`, v: '2' }, ['k']));
      expect(result.error).toBeNull();
      expect(await h.ds.getRepository(CapKv).findOneByOrFail({ id: existing.id })).toEqual({ id: existing.id, k: `b-${mode}`, v: '2' });
      expect(await h.changes()).toEqual([
        { entity: 'CapKv', id: String(existing.id), operation: 'update', fields: { k: { from: `a-${mode}`, to: `b-${mode}` }, v: { from: '1', to: '2' } } },
      ]);
    });
  });
});
