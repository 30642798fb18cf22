import { beforeAll, describe, expect, it } from 'vitest';
import {
  Column,
  DeleteDateColumn,
  Entity,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  type EntityManager,
  type EntitySubscriberInterface,
  type InsertEvent,
  type InsertResult,
  type Logger,
  type ObjectLiteral,
  type UpdateEvent,
} from 'typeorm';
import type { AuditChange } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { MODES, captureApp, type Mode } from '../app/capture-harness.js';

@Entity('lo_note')
class LoNote {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) title!: string;
  @Column({ type: 'int', default: 0 }) qty!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
}

@Entity('lo_tag')
class LoTag {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

@Entity('lo_folder')
class LoFolder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => LoItem, (item) => item.folder, { cascade: true }) items?: LoItem[];
  @ManyToMany(() => LoTag, { cascade: true }) @JoinTable({ name: 'lo_folder_tags' }) tags?: LoTag[];
}

@Entity('lo_item')
class LoItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) label!: string;
  @ManyToOne(() => LoFolder, (folder) => folder.items, { nullable: true, onDelete: 'CASCADE' }) folder?: LoFolder | null;
}

/** A row keyed by a value the app gives (no generated key). */
@Entity('lo_setting')
class LoSetting {
  @PrimaryColumn({ type: 'varchar', length: 32 }) name!: string;
  @Column({ type: 'varchar', length: 32 }) value!: string;
}

/** A row another save writes from an app's subscriber. */
@Entity('lo_mark')
class LoMark {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) mark!: string;
}

/** An app's subscriber that saves a mark, on the same query runner, before or after a note whose title asks for it is inserted or updated. */
class MarkingSubscriber implements EntitySubscriberInterface<LoNote> {
  listenTo() {
    return LoNote;
  }
  private mark(event: { entity?: ObjectLiteral; manager: EntityManager }, when: string): Promise<void> | void {
    const title = (event.entity as Partial<LoNote> | undefined)?.title;
    if (title?.startsWith(`mark-${when}`)) return event.manager.getRepository(LoMark).save({ mark: title }).then(() => undefined);
    // The same with listeners off: a persistence of its own inside the note's.
    if (title?.startsWith(`quiet-${when}`)) return event.manager.getRepository(LoMark).save({ mark: title }, { listeners: false }).then(() => undefined);
  }
  beforeInsert(event: InsertEvent<LoNote>): Promise<void> | void {
    return this.mark(event, 'before');
  }
  afterInsert(event: InsertEvent<LoNote>): Promise<void> | void {
    return this.mark(event, 'after');
  }
  beforeUpdate(event: UpdateEvent<LoNote>): Promise<void> | void {
    return this.mark(event, 'before');
  }
  afterUpdate(event: UpdateEvent<LoNote>): Promise<void> | void {
    return this.mark(event, 'after');
  }
}

/**
 * Writes made with TypeORM's listeners turned off — a query builder's
 * `.callListeners(false)`, `save()`/`remove()`/`softRemove()`/`recover()` with
 * `{ listeners: false }` — reach no subscriber. They are recorded all the same, as the same
 * writes with listeners are: once, in the unit of work's event (or one fallback event
 * outside one), in the write's transaction.
 */
describe.each(databases())('writes with listeners off on %s', (kind) => {
  const h = captureApp(kind, [LoNote, LoTag, LoFolder, LoItem, LoMark, LoSetting]);
  beforeAll(() => {
    // Called before the module's subscriber, as an app's subscriber registered first is.
    h.ds.subscribers.unshift(new MarkingSubscriber());
  });
  const notes = () => h.ds.getRepository(LoNote);
  const seed = (values: Partial<LoNote> = {}) => h.t.seed(() => notes().save(notes().create({ title: 'first', qty: 1, ...values })));
  const stored = (id: number) => notes().findOneOrFail({ where: { id }, withDeleted: true });

  /**
   * The reads of a write by criteria `fn` sends: the rows of `lo_note` read before a write
   * (under the table's own name) or after it (`audit_reread`). A write TypeORM's persistence
   * reports through the subscriber has none.
   */
  async function criteriaReads(fn: () => Promise<unknown>): Promise<string[]> {
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
    return sent.filter((query) => /audit_reread/.test(query) || /["`]lo_note["`] ["`]lo_note["`]/.test(query));
  }

  /** The changes of the one event `mode` stores: the handler's intent event, or one fallback change event. */
  const recorded = async (mode: Mode): Promise<AuditChange[]> => {
    const rows = await h.t.rows();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject(mode === 'handler' ? { action: 'edge.run', kind: 'intent', outcome: 'success' } : { kind: 'change', outcome: 'success' });
    return rows[0]!.changes ?? [];
  };
  const inserted = (row: LoNote) => ({
    entity: 'LoNote',
    id: String(row.id),
    operation: 'insert',
    fields: { id: { from: null, to: row.id }, title: { from: null, to: row.title }, qty: { from: null, to: row.qty }, deletedAt: { from: null, to: null } },
  });
  const deleted = (row: LoNote) => ({
    entity: 'LoNote',
    id: String(row.id),
    operation: 'delete',
    fields: { id: { from: row.id, to: null }, title: { from: row.title, to: null }, qty: { from: row.qty, to: null }, deletedAt: { from: null, to: null } },
  });
  const softDeleted = (changes: AuditChange[], id: number) => {
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'LoNote', id: String(id), operation: 'update' });
    expect(Object.keys(changes[0]!.fields)).toEqual(['deletedAt']);
    expect(changes[0]!.fields['deletedAt']).toMatchObject({ from: null, to: expect.any(String) });
  };
  const recovered = (changes: AuditChange[], id: number) => {
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ entity: 'LoNote', id: String(id), operation: 'update' });
    expect(Object.keys(changes[0]!.fields)).toEqual(['deletedAt']);
    expect(changes[0]!.fields['deletedAt']).toMatchObject({ from: expect.any(String), to: null });
  };

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    describe('query builder with callListeners(false)', () => {
      it('an update records the rows it changed, with their before values', async () => {
        const note = await seed();
        const outcome = await h.run(mode, () => h.ds.createQueryBuilder().update(LoNote).set({ qty: 5 }).where('id = :id', { id: note.id }).callListeners(false).execute());
        expect(outcome).toEqual(ok);
        expect(await recorded(mode)).toEqual([{ entity: 'LoNote', id: String(note.id), operation: 'update', fields: { qty: { from: 1, to: 5 } } }]);
      });

      it('an update on a transaction manager records the rows it changed', async () => {
        const note = await seed();
        const outcome = await h.run(mode, () =>
          h.ds.transaction((manager) => manager.createQueryBuilder().update(LoNote).set({ title: 'second' }).where('id = :id', { id: note.id }).callListeners(false).execute()),
        );
        expect(outcome).toEqual(ok);
        expect(await recorded(mode)).toEqual([{ entity: 'LoNote', id: String(note.id), operation: 'update', fields: { title: { from: 'first', to: 'second' } } }]);
      });

      it('a delete records the rows it deleted, with their values', async () => {
        const note = await seed();
        const outcome = await h.run(mode, () => h.ds.createQueryBuilder().delete().from(LoNote).where('id = :id', { id: note.id }).callListeners(false).execute());
        expect(outcome).toEqual(ok);
        expect(await recorded(mode)).toEqual([deleted(note)]);
      });

      it('an insert of one row records it under its generated id', async () => {
        const values = { title: `one-${mode}` };
        let result: InsertResult | undefined;
        const outcome = await h.run(mode, async () => {
          result = await h.ds.createQueryBuilder().insert().into(LoNote).values(values).callListeners(false).execute();
        });
        expect(outcome).toEqual(ok);
        const row = await notes().findOneByOrFail({ title: values.title });
        expect(result!.identifiers).toEqual([{ id: row.id }]);
        expect(await recorded(mode)).toEqual([inserted(row)]);
      });

      it('an insert of three rows records each under its own id', async () => {
        const titles = [`a-${mode}`, `b-${mode}`, `c-${mode}`];
        const outcome = await h.run(mode, () =>
          notes()
            .createQueryBuilder()
            .insert()
            .values(titles.map((title, i) => ({ title, qty: i })))
            .callListeners(false)
            .execute(),
        );
        expect(outcome).toEqual(ok);
        const rows = await Promise.all(titles.map((title) => notes().findOneByOrFail({ title })));
        expect(new Set(rows.map((row) => row.id)).size).toBe(3);
        expect(await h.changes()).toEqual(rows.map(inserted));
      });

      it('an insert that does not read generated values back (updateEntity(false)) records its row under its id', async () => {
        const values = { title: `ue-${mode}` };
        const outcome = await h.run(mode, () => h.ds.createQueryBuilder().insert().into(LoNote).values(values).updateEntity(false).callListeners(false).execute());
        expect(outcome).toEqual(ok);
        const row = await notes().findOneByOrFail({ title: values.title });
        expect(values).toEqual({ title: `ue-${mode}` });
        expect(await recorded(mode)).toEqual([inserted(row)]);
      });

      it('an upsert records the row it updated, with its before values, and the row it inserted', async () => {
        const name = `theme-${mode}`;
        await h.t.seed(() => h.ds.getRepository(LoSetting).save({ name, value: 'light' }));
        const upsert = (values: LoSetting[]) => h.ds.createQueryBuilder().insert().into(LoSetting).values(values).orUpdate(['value'], ['name']).callListeners(false).execute();
        expect(await h.run(mode, () => upsert([{ name, value: 'dark' }, { name: `lang-${mode}`, value: 'fr' }]))).toEqual(ok);
        const changes = await h.changes();
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([
            { entity: 'LoSetting', id: name, operation: 'update', fields: { value: { from: 'light', to: 'dark' } } },
            { entity: 'LoSetting', id: `lang-${mode}`, operation: 'insert', fields: { name: { from: null, to: `lang-${mode}` }, value: { from: null, to: 'fr' } } },
          ]),
        );
      });

      it('a soft delete, then a restore, each record the delete-date column', async () => {
        const note = await seed();
        expect(await h.run(mode, () => h.ds.createQueryBuilder().softDelete().from(LoNote).where('id = :id', { id: note.id }).callListeners(false).execute())).toEqual(ok);
        softDeleted(await recorded(mode), note.id);
        expect((await stored(note.id)).deletedAt).toBeInstanceOf(Date);
        await h.t.clearAudit();
        expect(await h.run(mode, () => h.ds.createQueryBuilder().restore().from(LoNote).where('id = :id', { id: note.id }).callListeners(false).execute())).toEqual(ok);
        recovered(await recorded(mode), note.id);
        expect((await stored(note.id)).deletedAt).toBeNull();
      });
    });

    describe('persistence with { listeners: false }', () => {
      it('save() of a new entity records its insert under its generated id', async () => {
        const note = notes().create({ title: `save-${mode}`, qty: 3 });
        expect(await h.run(mode, () => notes().save(note, { listeners: false }))).toEqual(ok);
        const row = await stored(note.id);
        expect(await recorded(mode)).toEqual([inserted(row)]);
      });

      it('save() of new entities with { reload: false } too records each under its generated id', async () => {
        const a = notes().create({ title: `nr-a-${mode}`, qty: 1 });
        const b = notes().create({ title: `nr-b-${mode}`, qty: 2 });
        expect(await h.run(mode, () => notes().save([a, b], { listeners: false, reload: false }))).toEqual(ok);
        const rows = await Promise.all([a, b].map((note) => notes().findOneByOrFail({ title: note.title })));
        expect(await h.changes()).toEqual(rows.map(inserted));
      });

      it('save() of a loaded entity records its update, with its before values', async () => {
        const note = await seed();
        const loaded = await stored(note.id);
        loaded.title = 'changed';
        const reads = await criteriaReads(async () => expect(await h.run(mode, () => notes().save(loaded, { listeners: false }))).toEqual(ok));
        expect(reads, 'read before and after, as a write by criteria').toHaveLength(2);
        expect(await recorded(mode)).toEqual([{ entity: 'LoNote', id: String(note.id), operation: 'update', fields: { title: { from: 'first', to: 'changed' } } }]);
      });

      it('save() of an entity given by its key records its update', async () => {
        const note = await seed();
        expect(await h.run(mode, () => notes().save({ id: note.id, qty: 9 }, { listeners: false }))).toEqual(ok);
        expect(await recorded(mode)).toEqual([{ entity: 'LoNote', id: String(note.id), operation: 'update', fields: { qty: { from: 1, to: 9 } } }]);
      });

      it('remove() records the delete, with the row\'s values', async () => {
        const note = await seed();
        const loaded = await stored(note.id);
        expect(await h.run(mode, () => notes().remove(loaded, { listeners: false }))).toEqual(ok);
        expect(await recorded(mode)).toEqual([deleted(note)]);
      });

      it('softRemove(), then recover(), each record the delete-date column', async () => {
        const note = await seed();
        const loaded = await stored(note.id);
        expect(await h.run(mode, () => notes().softRemove(loaded, { listeners: false }))).toEqual(ok);
        softDeleted(await recorded(mode), note.id);
        await h.t.clearAudit();
        const removed = await stored(note.id);
        expect(await h.run(mode, () => notes().recover(removed, { listeners: false }))).toEqual(ok);
        recovered(await recorded(mode), note.id);
      });

      it('save() of several entities in one call records each once', async () => {
        const a = notes().create({ title: `many-a-${mode}`, qty: 1 });
        const b = notes().create({ title: `many-b-${mode}`, qty: 2 });
        expect(await h.run(mode, () => notes().save([a, b], { listeners: false }))).toEqual(ok);
        const rows = await Promise.all([stored(a.id), stored(b.id)]);
        expect(await h.changes()).toEqual(rows.map(inserted));
      });
    });

    describe('atomic with the write', () => {
      it('a rolled-back transaction with such writes records nothing', async () => {
        const note = await seed();
        const outcome = await h.run(mode, () =>
          h.ds.transaction(async (manager) => {
            await manager.createQueryBuilder().update(LoNote).set({ qty: 7 }).where('id = :id', { id: note.id }).callListeners(false).execute();
            await manager.createQueryBuilder().insert().into(LoNote).values({ title: `rb-${mode}` }).callListeners(false).execute();
            await manager.getRepository(LoNote).save({ id: note.id, title: 'gone' }, { listeners: false });
            throw new Error('rolled back');
          }),
        );
        expect(outcome.status ?? (outcome.error as Error).message).toBe(mode === 'handler' ? 500 : 'rolled back');
        expect((await stored(note.id)).qty).toBe(1);
        expect(await notes().findOneBy({ title: `rb-${mode}` })).toBeNull();
        expect(await h.changes()).toEqual([]);
        if (mode === 'fallback') expect(await h.t.rows()).toEqual([]);
      });

      it('such writes after a save with listeners in the same transaction are each recorded once', async () => {
        const note = await seed();
        const outcome = await h.run(mode, () =>
          h.ds.transaction(async (manager) => {
            await manager.getRepository(LoNote).save({ id: note.id, title: 'saved' });
            await manager.createQueryBuilder().update(LoNote).set({ qty: 4 }).where('id = :id', { id: note.id }).callListeners(false).execute();
          }),
        );
        expect(outcome).toEqual(ok);
        // Net per entity instance: both writes are of one transaction (and, in the handler, one unit of work).
        expect(await recorded(mode)).toEqual([
          { entity: 'LoNote', id: String(note.id), operation: 'update', fields: { title: { from: 'first', to: 'saved' }, qty: { from: 1, to: 4 } } },
        ]);
      });
    });

    describe('a graph saved with { listeners: false }', () => {
      it('records each row and link once, read as stored', async () => {
        const folders = h.ds.getRepository(LoFolder);
        const folder = folders.create({ name: `f-${mode}`, items: [{ label: 'a' }, { label: 'b' }] as LoItem[], tags: [{ name: `t-${mode}` }] as LoTag[] });
        expect(await h.run(mode, () => folders.save(folder, { listeners: false }))).toEqual(ok);
        const [a, b] = folder.items!;
        const tag = folder.tags![0]!;
        const changes = await h.changes();
        // The links are part of the folder's insert.
        expect(changes).toHaveLength(4);
        expect(changes).toEqual(
          expect.arrayContaining([
            { entity: 'LoFolder', id: String(folder.id), operation: 'insert', fields: { id: { from: null, to: folder.id }, name: { from: null, to: folder.name }, tags: { added: [String(tag.id)], removed: [] } } },
            { entity: 'LoTag', id: String(tag.id), operation: 'insert', fields: { id: { from: null, to: tag.id }, name: { from: null, to: tag.name } } },
            ...[a!, b!].map((item) => ({
              entity: 'LoItem',
              id: String(item.id),
              operation: 'insert',
              fields: { id: { from: null, to: item.id }, label: { from: null, to: item.label }, folder: { from: null, to: folder.id } },
            })),
          ]),
        );
        await h.t.clearAudit();
        // A child taken out (nullified by TypeORM, known by its key), another renamed, the link removed.
        const loaded = await folders.findOneOrFail({ where: { id: folder.id }, relations: { items: true, tags: true } });
        loaded.items = loaded.items!.filter((item) => item.id === a!.id);
        loaded.items[0]!.label = 'a2';
        loaded.tags = [];
        expect(await h.run(mode, () => folders.save(loaded, { listeners: false }))).toEqual(ok);
        const after = await h.changes();
        expect(after).toHaveLength(3);
        expect(after).toEqual(
          expect.arrayContaining([
            { entity: 'LoFolder', id: String(folder.id), operation: 'update', fields: { tags: { added: [], removed: [String(tag.id)] } } },
            { entity: 'LoItem', id: String(a!.id), operation: 'update', fields: { label: { from: 'a', to: 'a2' } } },
            { entity: 'LoItem', id: String(b!.id), operation: 'update', fields: { folder: { from: folder.id, to: null } } },
          ]),
        );
        await h.t.clearAudit();
        // Its remaining child goes with it (ON DELETE CASCADE).
        expect(await h.run(mode, () => folders.remove(loaded, { listeners: false }))).toEqual(ok);
        const removed = await h.changes();
        expect(removed).toHaveLength(2);
        expect(removed).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ entity: 'LoFolder', id: String(folder.id), operation: 'delete' }),
            expect.objectContaining({ entity: 'LoItem', id: String(a!.id), operation: 'delete' }),
          ]),
        );
      });
    });

    describe('an app subscriber saving another row on the same runner', () => {
      it.each([
        ['mark', 'before', ''],
        ['mark', 'after', ''],
        ['quiet', 'before', ' with { listeners: false }'],
        ['quiet', 'after', ' with { listeners: false }'],
      ])('records the insert and the mark once each when it saves the mark (%s) %s the insert%s', async (prefix, when) => {
        const title = `${prefix}-${when}-i-${mode}`;
        const note = notes().create({ title, qty: 1 });
        expect(await h.run(mode, () => notes().save(note))).toEqual(ok);
        const mark = await h.ds.getRepository(LoMark).findOneByOrFail({ mark: title });
        const changes = await h.changes();
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([
            inserted(await stored(note.id)),
            { entity: 'LoMark', id: String(mark.id), operation: 'insert', fields: { id: { from: null, to: mark.id }, mark: { from: null, to: title } } },
          ]),
        );
      });

      it.each(['before', 'after'])('leaves the update to the subscriber when it saves the mark %s the update', async (when) => {
        const note = await seed();
        const loaded = await stored(note.id);
        const title = `mark-${when}-u-${mode}`;
        loaded.title = title;
        const reads = await criteriaReads(async () => expect(await h.run(mode, () => notes().save(loaded))).toEqual(ok));
        expect(reads, 'the save is not read around').toEqual([]);
        const mark = await h.ds.getRepository(LoMark).findOneByOrFail({ mark: title });
        const changes = await h.changes();
        expect(changes).toHaveLength(2);
        expect(changes).toEqual(
          expect.arrayContaining([
            { entity: 'LoNote', id: String(note.id), operation: 'update', fields: { title: { from: 'first', to: title } } },
            { entity: 'LoMark', id: String(mark.id), operation: 'insert', fields: { id: { from: null, to: mark.id }, mark: { from: null, to: title } } },
          ]),
        );
      });
    });

    describe('writes with listeners are still recorded once', () => {
      it('save() insert, save() update and remove() each record one change, through the subscriber', async () => {
        const note = notes().create({ title: `listened-${mode}`, qty: 2 });
        const run = async (fn: () => Promise<unknown>) => expect(await criteriaReads(async () => expect(await h.run(mode, fn)).toEqual(ok))).toEqual([]);
        await run(() => notes().save(note));
        const row = await stored(note.id);
        expect(await recorded(mode)).toEqual([inserted(row)]);
        await h.t.clearAudit();
        row.qty = 6;
        await run(() => notes().save(row));
        expect(await recorded(mode)).toEqual([{ entity: 'LoNote', id: String(row.id), operation: 'update', fields: { qty: { from: 2, to: 6 } } }]);
        await h.t.clearAudit();
        const id = row.id;
        await run(() => notes().remove(row));
        expect(await recorded(mode)).toEqual([deleted({ ...row, id })]);
      });

      it('softRemove() and recover() each record one change, through the subscriber', async () => {
        const note = await seed();
        const loaded = await stored(note.id);
        const run = async (fn: () => Promise<unknown>) => expect(await criteriaReads(async () => expect(await h.run(mode, fn)).toEqual(ok))).toEqual([]);
        await run(() => notes().softRemove(loaded));
        softDeleted(await recorded(mode), note.id);
        await h.t.clearAudit();
        await run(() => notes().recover(loaded));
        recovered(await recorded(mode), note.id);
      });
    });
  });
});
