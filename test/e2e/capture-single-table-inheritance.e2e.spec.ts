import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureCasesApp } from '../app/capture-upsert-harness.js';
import { CapContent, CapPhoto } from '../app/capture-upsert-entities.js';

/**
 * Single-table inheritance: a photo row (`@ChildEntity('photo')` of `CapContent`), inserted
 * through its own repository and updated by criteria through the base repository, is
 * recorded as `CapPhoto` both times: the entity type of a row does not depend on the
 * repository used.
 */
describe.each(databases())('single-table inheritance on %s', (kind) => {
  const h = captureCasesApp(kind);

  it.each(MODES)('%s: an update through the base repository is in the photo’s history', async (mode) => {
    let photo!: CapPhoto;
    await h.run(mode, async () => {
      photo = await h.ds.getRepository(CapPhoto).save({ title: 'sunset', width: 10 });
    });
    await h.run(mode, async () => {
      await h.ds.getRepository(CapContent).update({ id: photo.id }, { title: 'sunrise' });
    });
    expect((await h.ds.getRepository(CapPhoto).findOneByOrFail({ id: photo.id })).title).toBe('sunrise');
    const history = await h.t.audit.history({ type: 'CapPhoto', id: String(photo.id) });
    expect(history).toHaveLength(2);
    const changes = await h.changes();
    expect(changes.map((change) => [change.entity, change.id, change.operation])).toEqual([
      ['CapPhoto', String(photo.id), 'insert'],
      ['CapPhoto', String(photo.id), 'update'],
    ]);
  });
});
