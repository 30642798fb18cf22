import { describe, expect, it } from 'vitest';
import type { EntitySubscriberInterface } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapAlbum, CapTrack } from '../app/capture-upsert-entities.js';

/**
 * An album and its 5 tracks (one-to-many `cascade: true`, the track's key `onDelete:
 * 'CASCADE'`), loaded with its tracks and removed: TypeORM deletes each track itself, then
 * the album (TypeORM 1; 0.3 leaves them to the database). Each track is recorded once, by
 * TypeORM's own report; the module's read of what the database cascades to (bounded by
 * `maxCriteriaRows: 2`) leaves those rows out.
 */
describe.each(databases())('remove() of a parent whose children TypeORM and the database both cascade on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES, { maxCriteriaRows: 2 });

  it.each(MODES)('%s: five tracks deleted are five deletes, and nothing more', async (mode) => {
    const album = await h.t.seed(() =>
      h.ds.getRepository(CapAlbum).save({ title: `al-${mode}`, tracks: ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name })) as CapTrack[] }),
    );
    // Whether TypeORM removes the loaded tracks itself (TypeORM 1) or leaves them to the database's cascade (0.3).
    let removedByOrm = 0;
    const counter: EntitySubscriberInterface<CapTrack> = { listenTo: () => CapTrack, afterRemove: () => void removedByOrm++ };
    h.ds.subscribers.push(counter);
    const result = await h.run(mode, async () => {
      const loaded = await h.ds.getRepository(CapAlbum).findOneOrFail({ where: { id: album.id }, relations: { tracks: true } });
      await h.ds.getRepository(CapAlbum).remove(loaded);
    });
    h.ds.subscribers.splice(h.ds.subscribers.indexOf(counter), 1);
    expect(result.error).toBeNull();
    expect(await h.ds.getRepository(CapTrack).countBy({ album: { id: album.id } })).toBe(0);
    const trackChanges = (await h.changes()).filter((change) => change.entity === 'CapTrack');
    const exact = trackChanges.filter((change) => change.id !== null).map((change) => change.id);
    const partials = trackChanges.filter((change) => change.partial).map((change) => ({ partial: change.partial, count: change.count }));
    if (removedByOrm === 5) {
      expect(exact.sort()).toEqual(album.tracks!.map((track) => String(track.id)).sort());
      // No row beyond those five was deleted.
      expect(partials).toEqual([]);
    } else {
      // The database deletes them: the first two are read, the rest counted.
      expect(new Set(exact).size).toBe(exact.length);
      expect(exact.length + partials.reduce((sum, change) => sum + (change.count ?? 0), 0)).toBe(5);
    }
  });

  it.each(MODES)('%s: tracks removed in the same call as their album are one delete each, the others read or counted once', async (mode) => {
    const album = await h.t.seed(() =>
      h.ds.getRepository(CapAlbum).save({ title: `both-${mode}`, tracks: ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name })) as CapTrack[] }),
    );
    // The first and the last: one the cascade read would read, one it would count.
    const given = [album.tracks![0]!, album.tracks![4]!];
    const result = await h.run(mode, async () => {
      const bare = await h.ds.getRepository(CapAlbum).findOneByOrFail({ id: album.id });
      const tracks = await h.ds.getRepository(CapTrack).findBy(given.map((track) => ({ id: track.id })));
      await h.ds.manager.remove([bare, ...tracks]);
    });
    expect(result.error).toBeNull();
    expect(await h.ds.getRepository(CapTrack).countBy({ album: { id: album.id } })).toBe(0);
    const trackChanges = (await h.changes()).filter((change) => change.entity === 'CapTrack');
    const exact = trackChanges.filter((change) => change.id !== null).map((change) => change.id);
    for (const track of given) expect(exact).toContain(String(track.id));
    expect(new Set(exact).size).toBe(exact.length);
    // maxCriteriaRows: 2 — two of the three others read, one counted (none TypeORM removed).
    expect(exact.length + trackChanges.reduce((sum, change) => sum + (change.partial ? (change.count ?? 0) : 0), 0)).toBe(5);
  });
});
