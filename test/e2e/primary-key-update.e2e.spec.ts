import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseMembership, CaseTag } from '../app/capture-cases-entities.js';

/**
 * An update by criteria that changes the primary key moves the row: its record is the row
 * under its new key, with the key's change as a field change (the old key is its `from`).
 */
describe.each(databases())('update(criteria) of a primary key on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it('a generated id moved by update(criteria) is recorded under its new id', async () => {
      const tag = await h.t.seed(() => h.ds.getRepository(CaseTag).save({ name: `pk-${mode}` }));
      const newId = tag.id + 100_000;
      const result = await h.run(mode, () => h.ds.getRepository(CaseTag).update({ id: tag.id }, { id: newId }));
      expect(result).toEqual(ok);
      expect(await h.ds.getRepository(CaseTag).findOneBy({ id: newId })).toMatchObject({ name: `pk-${mode}` });
      expect(await h.ds.getRepository(CaseTag).findOneBy({ id: tag.id })).toBeNull();
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseTag');
      expect(changes).toHaveLength(1);
      expect(changes[0]).toEqual({ entity: 'CaseTag', id: String(newId), operation: 'update', fields: { id: { from: tag.id, to: newId } } });
      expect(await h.t.audit.history({ type: 'CaseTag', id: String(newId) })).toHaveLength(1);
    });

    it('a composite key part changed by update(criteria) is recorded under the new key', async () => {
      const org = mode === 'handler' ? 501 : 502;
      await h.t.seed(() => h.ds.getRepository(CaseMembership).save({ orgId: org, userId: 1, role: 'member' }));
      const result = await h.run(mode, () => h.ds.getRepository(CaseMembership).update({ orgId: org, userId: 1 }, { userId: 2, role: 'owner' }));
      expect(result).toEqual(ok);
      expect(await h.ds.getRepository(CaseMembership).findBy({ orgId: org })).toEqual([{ orgId: org, userId: 2, role: 'owner' }]);
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseMembership');
      expect(changes).toHaveLength(1);
      expect(changes[0]).toEqual({
        entity: 'CaseMembership',
        id: JSON.stringify({ orgId: org, userId: 2 }),
        operation: 'update',
        fields: { userId: { from: 1, to: 2 }, role: { from: 'member', to: 'owner' } },
      });
    });

    it('a key moved by an SQL expression is recorded as a partial change with its count', async () => {
      const tag = await h.t.seed(() => h.ds.getRepository(CaseTag).save({ name: `pk-expr-${mode}` }));
      const result = await h.run(mode, () =>
        h.ds.createQueryBuilder().update(CaseTag).set({ id: () => 'id + 200000' }).where('id = :id', { id: tag.id }).execute(),
      );
      expect(result).toEqual(ok);
      expect(await h.ds.getRepository(CaseTag).findOneBy({ id: tag.id + 200_000 })).toMatchObject({ name: `pk-expr-${mode}` });
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseTag');
      expect(changes).toEqual([{ entity: 'CaseTag', id: null, operation: 'update', fields: {}, partial: true, count: 1 }]);
    });
  });
});
