import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureCasesApp } from '../app/capture-upsert-harness.js';
import { CapKv } from '../app/capture-upsert-entities.js';

/**
 * `insert().orIgnore()` (ON CONFLICT DO NOTHING / INSERT IGNORE / INSERT OR IGNORE) of two
 * rows, one whose unique key exists (ignored: nothing changes) and one new (inserted).
 * The record says: one insert, of the new row, under its real id, with its values.
 */
describe.each(databases())('insert().orIgnore() on %s', (kind) => {
  const h = captureCasesApp(kind);

  it.each(MODES)('%s: only the row really inserted is recorded, under its id', async (mode) => {
    const key = `k${Math.random().toString(36).slice(2, 8)}`;
    const existing = await h.t.seed(() => h.ds.getRepository(CapKv).save({ k: `${key}-old`, v: 'one' }));
    const result = await h.run(mode, () =>
      h.ds.getRepository(CapKv).createQueryBuilder().insert().values([{ k: `${key}-old`, v: 'two' }, { k: `${key}-new`, v: 'new' }]).orIgnore().execute(),
    );
    expect(result.error).toBeNull();
    // What the database holds: the old row untouched, one new row.
    expect(await h.ds.getRepository(CapKv).findOneByOrFail({ id: existing.id })).toMatchObject({ k: `${key}-old`, v: 'one' });
    const inserted = await h.ds.getRepository(CapKv).findOneByOrFail({ k: `${key}-new` });
    const changes = await h.changes();
    expect(changes).toEqual([
      {
        entity: 'CapKv',
        id: String(inserted.id),
        operation: 'insert',
        fields: { id: { from: null, to: inserted.id }, k: { from: null, to: `${key}-new` }, v: { from: null, to: 'new' } },
      },
    ]);
  });
});
