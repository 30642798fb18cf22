import { describe, expect, it } from 'vitest';
import type { Logger } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import {
  HOSTILE_REPARENT_ENTITIES,
  HrBoard,
  HrBin,
  HrBook,
  HrCard,
  HrDoc,
  HrFolder,
  HrGadget,
  HrItem,
  HrList,
  HrShelf,
  HrTask,
} from '../app/hostile-reparent-entities.js';

/**
 * Hostile cases of a cascaded child moved to another parent by its key (`parent.children =
 * [{ id }]`): the move is one committed change of the child row, recorded once, with nothing
 * secret in clear, nothing recorded for a rolled-back save, and no extra reads for saves
 * that move nothing.
 */
describe.each(databases())('hostile: a cascaded child moved by its key on %s', (kind) => {
  const h = captureApp(kind, HOSTILE_REPARENT_ENTITIES);
  const folders = () => h.ds.getRepository(HrFolder);
  const docs = () => h.ds.getRepository(HrDoc);
  const of = async (entity: string) => (await h.changes()).filter((change) => change.entity === entity);

  /** Every statement sent while `fn` runs. */
  async function statements(fn: () => Promise<unknown>): Promise<string[]> {
    const sent: string[] = [];
    const logger = h.ds.logger;
    const spy: Logger = Object.create(logger) as Logger;
    spy.logQuery = (query, parameters, runner) => {
      sent.push(query);
      return logger.logQuery(query, parameters, runner);
    };
    (h.ds as { logger: Logger }).logger = spy;
    try {
      await fn();
    } finally {
      (h.ds as { logger: Logger }).logger = logger;
    }
    return sent;
  }

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it('records the move of a child whose many-to-one does not name its inverse side', async () => {
      const boards = () => h.ds.getRepository(HrBoard);
      const [from, to] = await h.t.seed(async () => [await boards().save({ name: 'from', cards: [{ text: 'card' }] as HrCard[] }), await boards().save({ name: 'to' })]);
      const card = from.cards![0]!;
      const result = await h.run(mode, async () => {
        const target = await boards().findOneOrFail({ where: { id: to.id }, relations: { cards: true } });
        target.cards = [{ id: card.id } as HrCard];
        await boards().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(HrCard).findOneOrFail({ where: { id: card.id }, relations: { board: true } });
      expect(stored.board?.id, 'the card moved').toBe(to.id);
      expect(await of('HrCard'), 'one record of the card moved').toEqual([
        expect.objectContaining({ id: String(card.id), operation: 'update', fields: { board: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records the move of a child whose many-to-one is lazy', async () => {
      const shelves = () => h.ds.getRepository(HrShelf);
      const [from, to] = await h.t.seed(async () => [await shelves().save({ name: 'from', books: [{ title: 'book' }] as HrBook[] }), await shelves().save({ name: 'to' })]);
      const book = from.books![0]!;
      const result = await h.run(mode, async () => {
        const target = await shelves().findOneOrFail({ where: { id: to.id }, relations: { books: true } });
        target.books = [{ id: book.id } as HrBook];
        await shelves().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await h.ds.getRepository(HrBook).findOneOrFail({ where: { id: book.id } });
      expect((await stored.shelf)?.id, 'the book moved').toBe(to.id);
      expect(await of('HrBook'), 'one record of the book moved').toEqual([
        expect.objectContaining({ id: String(book.id), operation: 'update', fields: { shelf: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records a later save of the child object whose move failed', async () => {
      const [from, to] = await h.t.seed(async () => [await folders().save({ name: 'from', docs: [{ title: 'before' }] as HrDoc[] }), await folders().save({ name: 'to' })]);
      const doc = from.docs![0]!;
      const result = await h.run(mode, async () => {
        const target = await folders().findOneOrFail({ where: { id: to.id }, relations: { docs: true } });
        const given = { id: doc.id, title: null } as HrDoc;
        target.docs = [given];
        // The move fails (a required title set to null): nothing is written.
        await expect(folders().save(target)).rejects.toThrow();
        given.title = 'fixed';
        await docs().save(given);
      });
      expect(result).toEqual(ok);
      expect(await docs().findOneByOrFail({ id: doc.id }), 'the doc saved on its own').toMatchObject({ title: 'fixed' });
      expect(await of('HrDoc'), 'the later save of the same object is recorded').toEqual([
        expect.objectContaining({ id: String(doc.id), operation: 'update', fields: { title: { from: 'before', to: 'fixed' } } }),
      ]);
    });

    it('records nothing for the move of a child whose relation is excluded', async () => {
      const lists = () => h.ds.getRepository(HrList);
      const [from, to] = await h.t.seed(async () => [await lists().save({ name: 'from', tasks: [{ text: 'task' }] as HrTask[] }), await lists().save({ name: 'to' })]);
      const task = from.tasks![0]!;
      const result = await h.run(mode, async () => {
        const target = await lists().findOneOrFail({ where: { id: to.id }, relations: { tasks: true } });
        target.tasks = [{ id: task.id } as HrTask];
        await lists().save(target);
      });
      expect(result).toEqual(ok);
      expect(await of('HrTask'), 'no record: the only field changed is excluded').toEqual([]);
    });

    it('records the move with the secret it sets masked, the excluded field, update date and version left out', async () => {
      const [from, to] = await h.t.seed(async () => {
        const folder = await folders().save({ name: 'from', docs: [{ title: 'before', apiToken: 'old-secret-value', note: 'n1' }] as HrDoc[] });
        return [folder, await folders().save({ name: 'to' })];
      });
      const doc = from.docs![0]!;
      const result = await h.run(mode, async () => {
        const target = await folders().findOneOrFail({ where: { id: to.id }, relations: { docs: true } });
        target.docs = [{ id: doc.id, title: 'after', apiToken: 'new-secret-value', note: 'n2' } as HrDoc];
        await folders().save(target);
      });
      expect(result).toEqual(ok);
      const stored = await docs().findOneOrFail({ where: { id: doc.id }, relations: { folder: true }, select: { id: true, title: true, apiToken: true, note: true, folder: { id: true } } });
      expect(stored).toMatchObject({ title: 'after', apiToken: 'new-secret-value', note: 'n2', folder: { id: to.id } });
      const raw = JSON.stringify(await h.t.rows());
      expect(raw, 'no secret in clear').not.toContain('secret-value');
      expect(await of('HrDoc'), 'one record of the move').toEqual([
        expect.objectContaining({
          id: String(doc.id),
          operation: 'update',
          fields: { title: { from: 'before', to: 'after' }, apiToken: { from: '[REDACTED]', to: '[REDACTED]' }, folder: { from: from.id, to: to.id } },
        }),
      ]);
    });

    it('records the moves of children taken from two parents, and the orphan unlinked, in one save', async () => {
      const [a, b, c] = await h.t.seed(async () => [
        await folders().save({ name: 'a', docs: [{ title: 'a1' }] as HrDoc[] }),
        await folders().save({ name: 'b', docs: [{ title: 'b1' }] as HrDoc[] }),
        await folders().save({ name: 'c', docs: [{ title: 'c1' }] as HrDoc[] }),
      ]);
      const [a1, b1, c1] = [a.docs![0]!, b.docs![0]!, c.docs![0]!];
      const result = await h.run(mode, async () => {
        const target = await folders().findOneOrFail({ where: { id: c.id }, relations: { docs: true } });
        target.docs = [{ id: a1.id } as HrDoc, { id: b1.id } as HrDoc];
        await folders().save(target);
      });
      expect(result).toEqual(ok);
      const changes = (await of('HrDoc')).map((change) => ({ id: change.id, fields: change.fields }));
      expect(changes.sort((x, y) => Number(x.id) - Number(y.id)), 'one record per doc').toEqual([
        { id: String(a1.id), fields: { folder: { from: a.id, to: c.id } } },
        { id: String(b1.id), fields: { folder: { from: b.id, to: c.id } } },
        { id: String(c1.id), fields: { folder: { from: c.id, to: null } } },
      ]);
    });

    it('records what a save of two parents swapping their children leaves', async () => {
      const [a, b] = await h.t.seed(async () => [await folders().save({ name: 'a', docs: [{ title: 'a1' }] as HrDoc[] }), await folders().save({ name: 'b', docs: [{ title: 'b1' }] as HrDoc[] })]);
      const [a1, b1] = [a.docs![0]!, b.docs![0]!];
      const result = await h.run(mode, async () => {
        const [x, y] = await Promise.all([
          folders().findOneOrFail({ where: { id: a.id }, relations: { docs: true } }),
          folders().findOneOrFail({ where: { id: b.id }, relations: { docs: true } }),
        ]);
        x.docs = [{ id: b1.id } as HrDoc];
        y.docs = [{ id: a1.id } as HrDoc];
        await folders().save([x, y]);
      });
      expect(result).toEqual(ok);
      const stored = await docs().find({ where: [{ id: a1.id }, { id: b1.id }], relations: { folder: true }, order: { id: 'ASC' } });
      const net = new Map<string, { from: unknown; to: unknown }>();
      for (const change of await of('HrDoc')) {
        const folder = change.fields.folder as { from: unknown; to: unknown } | undefined;
        if (!folder) continue;
        const first = net.get(change.id!)?.from ?? folder.from;
        net.set(change.id!, { from: first, to: folder.to });
      }
      for (const doc of stored) {
        const was = doc.id === a1.id ? a.id : b.id;
        const now = doc.folder?.id ?? null;
        expect(net.get(String(doc.id)) ?? { from: was, to: was }, `what is recorded of doc ${doc.id} ends where it is stored`).toEqual(
          was === now ? { from: was, to: was } : { from: was, to: now },
        );
      }
    });

    it('records nothing for a move in a transaction rolled back, once for one committed', async () => {
      const [from, to] = await h.t.seed(async () => [await folders().save({ name: 'from', docs: [{ title: 'd' }] as HrDoc[] }), await folders().save({ name: 'to' })]);
      const doc = from.docs![0]!;
      const move = async (fail: boolean) =>
        h.ds
          .transaction(async (manager) => {
            const target = await manager.getRepository(HrFolder).findOneOrFail({ where: { id: to.id }, relations: { docs: true } });
            target.docs = [{ id: doc.id } as HrDoc];
            await manager.getRepository(HrFolder).save(target);
            if (fail) throw new Error('rolled back');
          })
          .catch(() => undefined);
      expect(await h.run(mode, () => move(true))).toEqual(ok);
      expect(await of('HrDoc'), 'nothing for the rolled-back move').toEqual([]);
      expect(await h.run(mode, () => move(false))).toEqual(ok);
      expect(await of('HrDoc'), 'one record of the committed move').toEqual([
        expect.objectContaining({ id: String(doc.id), fields: { folder: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records the move of a child of a single-table inheritance given as { id }, as the entity its row is', async () => {
      const bins = () => h.ds.getRepository(HrBin);
      const [from, to] = await h.t.seed(async () => {
        const bin = await bins().save({ name: 'from' });
        await h.ds.getRepository(HrGadget).save({ name: 'gadget', power: 5, bin });
        return [bin, await bins().save({ name: 'to' })];
      });
      const gadget = await h.ds.getRepository(HrGadget).findOneByOrFail({ name: 'gadget', bin: { id: from.id } });
      const result = await h.run(mode, async () => {
        const target = await bins().findOneOrFail({ where: { id: to.id }, relations: { items: true } });
        target.items = [{ id: gadget.id } as HrItem];
        await bins().save(target);
      });
      expect(result).toEqual(ok);
      const changes = (await h.changes()).filter((change) => change.entity === 'HrGadget' || change.entity === 'HrItem');
      expect(changes, 'one record of the gadget moved').toEqual([
        expect.objectContaining({ entity: 'HrGadget', id: String(gadget.id), operation: 'update', fields: { bin: { from: from.id, to: to.id } } }),
      ]);
    });

    it('records a move saved with { listeners: false } as its update of the relation, and the next save as usual', async () => {
      const [from, to] = await h.t.seed(async () => [await folders().save({ name: 'from', docs: [{ title: 'quiet' }] as HrDoc[] }), await folders().save({ name: 'to' })]);
      const doc = from.docs![0]!;
      const result = await h.run(mode, async () => {
        const target = await folders().findOneOrFail({ where: { id: to.id }, relations: { docs: true } });
        const given = { id: doc.id } as HrDoc;
        target.docs = [given];
        await folders().save(target, { listeners: false });
        given.title = 'loud';
        await docs().save(given);
      });
      expect(result).toEqual(ok);
      const moved = { folder: { from: from.id, to: to.id } };
      const renamed = { title: { from: 'quiet', to: 'loud' } };
      // One unit of work: net per entity instance; outside one, one record per save.
      expect(await of('HrDoc')).toEqual(
        mode === 'handler'
          ? [{ entity: 'HrDoc', id: String(doc.id), operation: 'update', fields: { ...moved, ...renamed } }]
          : [
              { entity: 'HrDoc', id: String(doc.id), operation: 'update', fields: moved },
              { entity: 'HrDoc', id: String(doc.id), operation: 'update', fields: renamed },
            ],
      );
    });

    it('reads nothing more for saves that move no child', async () => {
      const [a, b] = await h.t.seed(async () => [await folders().save({ name: 'a', docs: [{ title: 'a1' }, { title: 'a2' }] as HrDoc[] }), await folders().save({ name: 'b' })]);
      const sent = await statements(() =>
        h.run(mode, async () => {
          const loaded = await folders().findOneOrFail({ where: { id: a.id }, relations: { docs: true } });
          loaded.docs![0]!.title = 'renamed';
          loaded.name = 'a!';
          await folders().save(loaded);
          const doc = await docs().findOneByOrFail({ id: a.docs![1]!.id });
          doc.folder = { id: b.id } as HrFolder;
          doc.title = 'moved itself';
          await docs().save(doc);
        }),
      );
      expect(
        sent.filter((query) => /audit_reread/.test(query) || (/hr_doc/.test(query) && /FOR UPDATE/i.test(query))),
        'no read of the docs around their writes',
      ).toEqual([]);
      expect((await of('HrDoc')).length).toBe(2);
    });
  });
});
