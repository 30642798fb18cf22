import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseTag } from '../app/capture-cases-entities.js';

/**
 * `save(entity, { reload: false })` (a common bulk-insert speed-up): the row is inserted with
 * a generated id that TypeORM does not write into the entity. Its record carries that id (the
 * change's `id`, the event's target), so that `history()` of the row finds its creation.
 */
describe.each(databases())('save(…, { reload: false }) of a new row on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);
  const tags = () => h.ds.getRepository(CaseTag);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it('the insert is recorded under the generated id', async () => {
      const name = `rf-${mode}`;
      const given = { name } as CaseTag;
      const result = await h.run(mode, () => tags().save(given, { reload: false }));
      expect(result).toEqual(ok);
      const stored = await tags().findOneByOrFail({ name });
      const history = await h.t.audit.history({ type: 'CaseTag', id: String(stored.id) });
      expect(history).toHaveLength(1);
      expect(await h.changes()).toEqual([
        { entity: 'CaseTag', id: String(stored.id), operation: 'insert', fields: { id: { from: null, to: stored.id }, name: { from: null, to: name } } },
      ]);
      // The entity is left as { reload: false } leaves it.
      expect(given.id).toBeUndefined();
    });

    it('several rows saved at once are each recorded under their own id', async () => {
      const names = [`rf-a-${mode}`, `rf-b-${mode}`, `rf-c-${mode}`];
      const result = await h.run(mode, () => tags().save(names.map((name) => ({ name })), { reload: false }));
      expect(result).toEqual(ok);
      const stored = await Promise.all(names.map((name) => tags().findOneByOrFail({ name })));
      const changes = await h.changes();
      expect(changes).toHaveLength(3);
      expect(changes).toEqual(
        expect.arrayContaining(
          stored.map((row) => ({ entity: 'CaseTag', id: String(row.id), operation: 'insert', fields: { id: { from: null, to: row.id }, name: { from: null, to: row.name } } })),
        ),
      );
    });
  });
});
