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

    it('a row given its key among rows whose keys are generated: each row under its own id, or none and marked partial', async () => {
      const names = [`rf-m1-${mode}`, `rf-m2-${mode}`, `rf-m3-${mode}`];
      const given = 200_000 + Math.floor(Math.random() * 100_000);
      const result = await h.run(mode, () => tags().save([{ name: names[0] }, { id: given, name: names[1] }, { name: names[2] }] as CaseTag[], { reload: false }));
      expect(result).toEqual(ok);
      // PostgreSQL leaves the given key out of the insert (the row gets a generated one); the others keep it.
      const stored = await Promise.all(names.map((name) => tags().findOneByOrFail({ name })));
      const changes = await h.changes();
      expect(changes).toHaveLength(3);
      for (const [index, row] of stored.entries()) {
        const change = changes.find((c) => (c.fields as Record<string, { to: unknown }>)['name']?.to === row.name);
        expect(change, `the record of ${row.name}`).toBeDefined();
        if (change!.id === null) expect(change, `${row.name} recorded without its id is marked partial`).toMatchObject({ partial: true });
        else expect(change!.id, `${row.name} (row ${index}) recorded under its own id`).toBe(String(row.id));
      }
    });
  });
});
