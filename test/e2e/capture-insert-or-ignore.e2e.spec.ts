import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapKv, CapTrack } from '../app/capture-upsert-entities.js';

/**
 * `insert().orIgnore()` (ON CONFLICT DO NOTHING / INSERT IGNORE / INSERT OR IGNORE) of two
 * rows, one whose unique key exists (ignored: nothing changes) and one new (inserted).
 * The record says: one insert, of the new row, under its real id, with its values.
 */
describe.each(databases())('insert().orIgnore() on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

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

  it.each(MODES)('%s: rows with no unique key value are each recorded under their id where the database returns the rows it inserts', async (mode) => {
    const names = [`${mode}-x`, `${mode}-y`, `${mode}-z`];
    const result = await h.run(mode, () =>
      h.ds.getRepository(CapTrack).createQueryBuilder().insert().values(names.map((name) => ({ name }))).orIgnore().execute(),
    );
    expect(result.error).toBeNull();
    const rows = await h.ds.getRepository(CapTrack).find({ where: names.map((name) => ({ name })), order: { id: 'ASC' } });
    expect(rows).toHaveLength(3);
    const changes = await h.changes();
    if (h.ds.driver.isReturningSqlSupported('insert')) {
      expect(changes.map((change) => [change.entity, change.id, change.operation, change.fields['name']]).sort()).toEqual(
        rows.map((row) => ['CapTrack', String(row.id), 'insert', { from: null, to: row.name }]).sort(),
      );
    } else {
      // SQLite: TypeORM's ids are counted from the last one generated, wrong if a row was skipped.
      expect(changes).toEqual([{ entity: 'CapTrack', id: null, operation: 'insert', fields: {}, partial: true }]);
    }
  });

  it.each(MODES)('%s: a row inserted twice in one statement is one insert', async (mode) => {
    const key = `k${Math.random().toString(36).slice(2, 8)}`;
    const result = await h.run(mode, () =>
      h.ds.getRepository(CapKv).createQueryBuilder().insert().values([{ k: key, v: 'first' }, { k: key, v: 'second' }]).orIgnore().execute(),
    );
    expect(result.error).toBeNull();
    const row = await h.ds.getRepository(CapKv).findOneByOrFail({ k: key });
    expect(await h.changes()).toEqual([
      { entity: 'CapKv', id: String(row.id), operation: 'insert', fields: { id: { from: null, to: row.id }, k: { from: null, to: key }, v: { from: null, to: row.v } } },
    ]);
  });
});
