import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapContent, CapPhoto, CapVideo } from '../app/capture-upsert-entities.js';

/**
 * Single-table inheritance: a photo row (`@ChildEntity('photo')` of `CapContent`), inserted
 * through its own repository and updated by criteria through the base repository, is
 * recorded as `CapPhoto` both times: the entity type of a row does not depend on the
 * repository used.
 */
describe.each(databases())('single-table inheritance on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

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

  it.each(MODES)('%s: an update and a delete by criteria through the base repository record each row as its own child entity', async (mode) => {
    const title = `mixed-${mode}`;
    const photo = await h.t.seed(() => h.ds.getRepository(CapPhoto).save({ title, width: 10 }));
    const video = await h.t.seed(() => h.ds.getRepository(CapVideo).save({ title, seconds: 30 }));
    const result = await h.run(mode, async () => {
      await h.ds.getRepository(CapContent).update({ title }, { title: `${title}!` });
      await h.ds.getRepository(CapContent).delete({ id: video.id });
    });
    expect(result.error).toBeNull();
    const changes = await h.changes();
    // Outside a unit of work each write is an event of its own; in one, the video's update and delete are one delete.
    const videoChanges: unknown[][] =
      mode === 'handler'
        ? [['CapVideo', String(video.id), 'delete', { from: title, to: null }]]
        : [
            ['CapVideo', String(video.id), 'update', { from: title, to: `${title}!` }],
            ['CapVideo', String(video.id), 'delete', { from: `${title}!`, to: null }],
          ];
    expect(changes.map((change) => [change.entity, change.id, change.operation, change.fields['title']])).toEqual([
      ['CapPhoto', String(photo.id), 'update', { from: title, to: `${title}!` }],
      ...videoChanges,
    ]);
    expect(changes.find((change) => change.operation === 'delete')!.fields['seconds']).toEqual({ from: 30, to: null });
  });
});
