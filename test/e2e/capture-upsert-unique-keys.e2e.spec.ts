import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapAlbum, CapKv, CapVote } from '../app/capture-upsert-entities.js';

/**
 * MySQL/MariaDB's `ON DUPLICATE KEY UPDATE` updates the row whichever unique key the new
 * values collide with; it takes no conflict target. An existing row updated this way is
 * recorded as an update with its before values, not as the insert of a new row.
 */
describe.each(databases().filter((kind) => kind === 'mariadb'))('ON DUPLICATE KEY UPDATE on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

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

/** A unique key holding a relation's column: the row an upsert updates is found by it, on every database. */
describe.each(databases())('upsert by a unique key with a relation on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

  it.each(MODES)('%s: an upsert of an existing vote is an update, of a new one an insert', async (mode) => {
    const album = await h.t.seed(() => h.ds.getRepository(CapAlbum).save({ title: `votes-${mode}` }));
    const vote = await h.t.seed(() => h.ds.getRepository(CapVote).save({ album, voter: 'ann', value: 1 }));
    const result = await h.run(mode, () =>
      h.ds.getRepository(CapVote).upsert(
        [
          { album: { id: album.id }, voter: 'ann', value: 2 },
          { album: { id: album.id }, voter: 'bob', value: 5 },
        ],
        ['album', 'voter'],
      ),
    );
    expect(result.error).toBeNull();
    const bob = await h.ds.getRepository(CapVote).findOneByOrFail({ album: { id: album.id }, voter: 'bob' });
    const changes = await h.changes();
    expect(changes.map((change) => [change.id, change.operation, change.fields['value']]).sort()).toEqual(
      [
        [String(vote.id), 'update', { from: 1, to: 2 }],
        [String(bob.id), 'insert', { from: null, to: 5 }],
      ].sort(),
    );
    expect(changes.find((change) => change.operation === 'insert')!.fields['album']).toEqual({ from: null, to: album.id });
  });
});
