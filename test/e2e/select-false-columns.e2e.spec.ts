import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { captureApp, MODES } from '../app/capture-harness.js';
import { EdgeAccount, EdgeHidden } from '../app/capture-edge-entities.js';

/**
 * A column declared `@Column({ select: false })` (kept out of default reads: an internal
 * note, a hash, a national id) is a followed field like any other: the module's own reads
 * select it, and a `save()` that changes it reads its stored value first (TypeORM's loaded
 * row leaves it out).
 */
describe.each(databases())('a select: false column on %s', (kind) => {
  const h = captureApp(kind, [EdgeHidden, EdgeAccount]);
  const seed = (mode: string) => h.t.seed(() => h.ds.getRepository(EdgeHidden).save({ title: `h-${mode}`, internalNote: 'n1' }));

  describe.each(MODES)('%s', (mode) => {
    it('update(criteria) of it is recorded with its before value', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, () => h.ds.getRepository(EdgeHidden).update({ id: row.id }, { internalNote: 'n2' }))).error).toBeNull();
      expect(await h.changes()).toEqual([{ entity: 'EdgeHidden', id: String(row.id), operation: 'update', fields: { internalNote: { from: 'n1', to: 'n2' } } }]);
    });

    it('update(criteria) of another column records only that column', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, () => h.ds.getRepository(EdgeHidden).update({ id: row.id }, { title: 'other' }))).error).toBeNull();
      expect(await h.changes()).toEqual([{ entity: 'EdgeHidden', id: String(row.id), operation: 'update', fields: { title: { from: `h-${mode}`, to: 'other' } } }]);
    });

    it('save() of it records its real before value', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, () => h.ds.getRepository(EdgeHidden).save({ id: row.id, internalNote: 'n3' }))).error).toBeNull();
      expect(await h.changes()).toEqual([{ entity: 'EdgeHidden', id: String(row.id), operation: 'update', fields: { internalNote: { from: 'n1', to: 'n3' } } }]);
    });

    it('save() of it with its stored value records nothing', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, () => h.ds.getRepository(EdgeHidden).save({ id: row.id, internalNote: 'n1' }))).error).toBeNull();
      expect(await h.changes()).toEqual([]);
    });

    it('delete(criteria) records it among the row’s fields', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, () => h.ds.getRepository(EdgeHidden).delete({ id: row.id }))).error).toBeNull();
      const [change] = await h.changes();
      expect(change?.fields['internalNote']).toEqual({ from: 'n1', to: null });
    });

    it('remove() records it among the row’s fields', async () => {
      const row = await seed(mode);
      expect((await h.run(mode, async () => h.ds.getRepository(EdgeHidden).remove(await h.ds.getRepository(EdgeHidden).findOneByOrFail({ id: row.id })))).error).toBeNull();
      const [change] = await h.changes();
      expect(change?.fields['internalNote']).toEqual({ from: 'n1', to: null });
    });
  });

  it.each(MODES)('%s: a secret one is read and masked, never stored in clear', async (mode) => {
    const account = await h.t.seed(() => h.ds.getRepository(EdgeAccount).save({ login: `a-${mode}`, passwordHash: 'hash_OLD_0001' }));
    const repository = h.ds.getRepository(EdgeAccount);
    expect((await h.run(mode, () => repository.save({ id: account.id, passwordHash: 'hash_NEW_0002' }))).error).toBeNull();
    expect((await h.run(mode, () => repository.update({ id: account.id }, { passwordHash: 'hash_NEW_0003' }))).error).toBeNull();
    expect((await h.run(mode, () => repository.delete({ id: account.id }))).error).toBeNull();
    const changes = await h.changes();
    expect(JSON.stringify(changes)).not.toMatch(/hash_(OLD|NEW)/);
    expect(changes.map((change) => [change.operation, change.fields['passwordHash']])).toEqual([
      ['update', { from: '[REDACTED]', to: '[REDACTED]' }],
      ['update', { from: '[REDACTED]', to: '[REDACTED]' }],
      ['delete', { from: '[REDACTED]', to: null }],
    ]);
  });
});
