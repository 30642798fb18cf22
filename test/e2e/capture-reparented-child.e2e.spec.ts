import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseBadge, CaseHolder, CaseLineD, CaseLineN, CasePost } from '../app/capture-cases-entities.js';

/**
 * A one-to-many (or the inverse side of a one-to-one) with `cascade: true` given a child by
 * its key only (`post.lines = [{ id }]`, `holder.badge = { id }`):
 * TypeORM moves the child's row to the parent it is saved with (its foreign key), a change
 * the child's own update events do not list. It is a committed change of the child row,
 * with its record — once, merged with what else the save changes in that row.
 */
describe.each(databases())('a cascaded child moved to another parent by its key on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);
  const posts = () => h.ds.getRepository(CasePost);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it('records the move of the child given as { id }', async () => {
      const [from, to] = await h.t.seed(async () => [
        await posts().save({ title: 'from', linesN: [{ text: 'line' }] as CaseLineN[] }),
        await posts().save({ title: 'to' }),
      ]);
      const line = from.linesN![0]!;
      const result = await h.run(mode, async () => {
        const target = await posts().findOneOrFail({ where: { id: to.id }, relations: { linesN: true } });
        target.linesN = [{ id: line.id } as CaseLineN];
        await posts().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(CaseLineN).findOneOrFail({ where: { id: line.id }, relations: { post: true } });
      expect(stored.post?.id).toBe(to.id);
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseLineN');
      expect(changes).toEqual([
        expect.objectContaining({ id: String(line.id), operation: 'update', fields: { post: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records the move and the other fields of the child given as { id, text }, in one change', async () => {
      const [from, to] = await h.t.seed(async () => [
        await posts().save({ title: 'from', linesD: [{ text: 'before' }, { text: 'stays' }] as CaseLineD[] }),
        await posts().save({ title: 'to', linesD: [{ text: 'there' }] as CaseLineD[] }),
      ]);
      const line = from.linesD!.find((l) => l.text === 'before')!;
      const there = to.linesD![0]!;
      const result = await h.run(mode, async () => {
        const target = await posts().findOneOrFail({ where: { id: to.id }, relations: { linesD: true } });
        target.linesD = [...target.linesD!, { id: line.id, text: 'after' } as CaseLineD];
        await posts().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(CaseLineD).findOneOrFail({ where: { id: line.id }, relations: { post: true } });
      expect(stored).toMatchObject({ text: 'after', post: { id: to.id } });
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseLineD');
      expect(changes).toEqual([
        expect.objectContaining({
          id: String(line.id),
          operation: 'update',
          fields: { text: { from: 'before', to: 'after' }, post: { from: from.id, to: to.id } },
        }),
      ]);
      expect(changes.some((change) => change.id === String(there.id))).toBe(false);
    });

    it('records the move of a one-to-one child given to its new holder as { id }', async () => {
      const holders = () => h.ds.getRepository(CaseHolder);
      const [from, to] = await h.t.seed(async () => [await holders().save({ name: 'from', badge: { code: 'b1' } as CaseBadge }), await holders().save({ name: 'to' })]);
      const badge = from.badge!;
      const result = await h.run(mode, async () => {
        const target = await holders().findOneOrFail({ where: { id: to.id }, relations: { badge: true } });
        target.badge = { id: badge.id } as CaseBadge;
        await holders().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(CaseBadge).findOneOrFail({ where: { id: badge.id }, relations: { holder: true } });
      expect(stored.holder?.id).toBe(to.id);
      const changes = (await h.changes()).filter((change) => change.entity === 'CaseBadge');
      expect(changes).toEqual([
        expect.objectContaining({ id: String(badge.id), operation: 'update', fields: { holder: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records nothing for a child given as { id } that already belongs to the parent', async () => {
      const post = await h.t.seed(() => posts().save({ title: 'p', linesN: [{ text: 'line' }] as CaseLineN[] }));
      const line = post.linesN![0]!;
      const result = await h.run(mode, async () => {
        const loaded = await posts().findOneOrFail({ where: { id: post.id }, relations: { linesN: true } });
        loaded.linesN = [{ id: line.id } as CaseLineN];
        await posts().save(loaded);
      });
      expect(result).toEqual(ok);
      expect((await h.changes()).filter((change) => change.entity === 'CaseLineN')).toEqual([]);
    });
  });
});
