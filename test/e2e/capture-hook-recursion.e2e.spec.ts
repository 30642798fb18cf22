import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Column, Entity, PrimaryGeneratedColumn, type EntityManager, type EntitySubscriberInterface, type InsertEvent } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';

@Entity('rc_node')
class RcNode {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 60 }) name!: string;
  @Column({ type: 'int', default: 0 }) depth!: number;
}

/** How the hook inserts the next node, for the test running now. */
let insertNext: ((manager: EntityManager, node: { name: string; depth: number }) => Promise<unknown>) | undefined;
const DEPTH = 3;

/** An app's subscriber whose afterInsert inserts a node of the same entity, down to DEPTH. */
class RecursiveSubscriber implements EntitySubscriberInterface<RcNode> {
  listenTo() {
    return RcNode;
  }
  async afterInsert(event: InsertEvent<RcNode>) {
    const node = event.entity;
    if (!insertNext || node.depth >= DEPTH) return;
    await insertNext(event.manager, { name: `${node.name.replace(/-\d+$/, '')}-${node.depth + 1}`, depth: node.depth + 1 });
  }
}

/** An afterInsert hook inserting a row of the same entity, recursively (bounded by the app): each row is recorded once. */
describe.each(databases())('an afterInsert hook inserting into its own entity, on %s', (kind) => {
  const h = captureApp(kind, [RcNode]);
  beforeAll(() => {
    h.ds.subscribers.unshift(new RecursiveSubscriber());
  });
  afterEach(() => {
    insertNext = undefined;
  });
  const nodes = () => h.ds.getRepository(RcNode);
  let unique = 0;

  const forms = {
    'save() on the event manager': (manager: EntityManager, node: { name: string; depth: number }) => manager.save(RcNode, node),
    'insert() on the event manager': (manager: EntityManager, node: { name: string; depth: number }) => manager.insert(RcNode, node),
    'insert() of the repository': (_manager: EntityManager, node: { name: string; depth: number }) => nodes().insert(node),
  };
  const starts = {
    'repository.insert()': (name: string) => nodes().insert({ name: `${name}-0`, depth: 0 }),
    'repository.save()': (name: string) => nodes().save({ name: `${name}-0`, depth: 0 }),
  };

  describe.each(MODES)('%s', (mode) => {
    describe.each(Object.keys(starts) as Array<keyof typeof starts>)('started by %s', (start) => {
      it.each(Object.keys(forms) as Array<keyof typeof forms>)('the hook inserting with %s: each row recorded once, under its id, with its values', async (form) => {
        const name = `n${++unique}${mode}`;
        insertNext = forms[form];
        const outcome = await h.run(mode, () => starts[start](name));
        expect(outcome).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
        const stored = await nodes().find({ order: { depth: 'ASC' } });
        const mine = stored.filter((node) => node.name.startsWith(`${name}-`));
        expect(mine.map((node) => node.depth)).toEqual([0, 1, 2, 3]);
        const inserts = (await h.changes()).filter((change) => change.entity === 'RcNode');
        expect(inserts).toHaveLength(4);
        expect(inserts).toEqual(
          expect.arrayContaining(
            mine.map((node) => ({
              entity: 'RcNode',
              id: String(node.id),
              operation: 'insert',
              fields: { id: { from: null, to: node.id }, name: { from: null, to: node.name }, depth: { from: null, to: node.depth } },
            })),
          ),
        );
      });
    });
  });
});
