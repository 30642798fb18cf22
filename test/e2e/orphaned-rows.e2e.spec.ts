import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseLineD, CaseLineN, CaseLineS, CasePost } from '../app/capture-cases-entities.js';

/**
 * A one-to-many with `cascade: true`: a child taken out of the parent's array is an orphan,
 * which TypeORM deletes, soft-deletes or unlinks (`orphanedRowAction`) in the parent's save,
 * knowing the row by its key only. Each is a committed change of the child row, with its record.
 */
describe.each(databases())('orphaned rows of a cascaded one-to-many on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);
  const posts = () => h.ds.getRepository(CasePost);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it("orphanedRowAction 'delete': the orphan's deletion is recorded with its values", async () => {
      const post = await h.t.seed(() => posts().save({ title: 'p', linesD: [{ text: 'keep' }, { text: 'orphan' }] as CaseLineD[] }));
      const orphan = post.linesD!.find((line) => line.text === 'orphan')!;
      const result = await h.run(mode, async () => {
        const loaded = await posts().findOneOrFail({ where: { id: post.id }, relations: { linesD: true } });
        loaded.linesD = loaded.linesD!.filter((line) => line.text === 'keep');
        await posts().save(loaded);
      });
      expect(result).toEqual(ok);
      expect(await h.ds.getRepository(CaseLineD).findOneBy({ id: orphan.id })).toBeNull();
      const changes = await h.changes();
      expect(changes.filter((change) => change.entity === 'CaseLineD' && change.id === String(orphan.id))).toEqual([
        expect.objectContaining({ operation: 'delete', fields: expect.objectContaining({ text: { from: 'orphan', to: null } }) }),
      ]);
      expect(changes.find((change) => change.entity === 'CaseLineD' && change.id === String(orphan.id))!.fields).toEqual({
        id: { from: orphan.id, to: null },
        text: { from: 'orphan', to: null },
        post: { from: post.id, to: null },
      });
      // The line kept is not changed.
      expect(changes.filter((change) => change.entity === 'CaseLineD')).toHaveLength(1);
    });

    it("orphanedRowAction 'soft-delete': the orphan's delete date is recorded", async () => {
      const post = await h.t.seed(() => posts().save({ title: 'p', linesS: [{ text: 'keep' }, { text: 'orphan' }] as CaseLineS[] }));
      const orphan = post.linesS!.find((line) => line.text === 'orphan')!;
      const result = await h.run(mode, async () => {
        const loaded = await posts().findOneOrFail({ where: { id: post.id }, relations: { linesS: true } });
        loaded.linesS = loaded.linesS!.filter((line) => line.text === 'keep');
        await posts().save(loaded);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(CaseLineS).findOneOrFail({ where: { id: orphan.id }, withDeleted: true });
      expect(stored.deletedAt).not.toBeNull();
      const changes = await h.changes();
      expect(changes.filter((change) => change.entity === 'CaseLineS' && change.id === String(orphan.id))).toEqual([
        expect.objectContaining({ operation: 'update', fields: { deletedAt: { from: null, to: expect.any(String) } } }),
      ]);
      expect(changes.filter((change) => change.entity === 'CaseLineS')).toHaveLength(1);
    });

    it("orphanedRowAction 'nullify': the orphan's unlinking is recorded", async () => {
      const post = await h.t.seed(() => posts().save({ title: 'p', linesN: [{ text: 'keep' }, { text: 'orphan' }] as CaseLineN[] }));
      const orphan = post.linesN!.find((line) => line.text === 'orphan')!;
      const result = await h.run(mode, async () => {
        const loaded = await posts().findOneOrFail({ where: { id: post.id }, relations: { linesN: true } });
        loaded.linesN = loaded.linesN!.filter((line) => line.text === 'keep');
        await posts().save(loaded);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(CaseLineN).findOneOrFail({ where: { id: orphan.id }, relations: { post: true } });
      expect(stored.post).toBeNull();
      const changes = await h.changes();
      expect(changes.filter((change) => change.entity === 'CaseLineN' && change.id === String(orphan.id))).toEqual([
        expect.objectContaining({ operation: 'update', fields: { post: { from: post.id, to: null } } }),
      ]);
      expect(changes.filter((change) => change.entity === 'CaseLineN')).toHaveLength(1);
    });
  });
});
