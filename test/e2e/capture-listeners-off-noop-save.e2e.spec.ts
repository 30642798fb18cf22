import { describe, expect, it } from 'vitest';
import { BeforeUpdate, Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';

/** An entity whose own listener normalises its name before an update (trimming input). */
@Entity('noop_save_person')
class NoopSavePerson {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @Column({ type: 'int', default: 0 }) score!: number;
  @BeforeUpdate() trim(): void {
    this.name = this.name.trim();
  }
}

describe.each(databases())('a save that writes nothing, then a write with listeners off, on %s', (kind) => {
  const h = captureApp(kind, [NoopSavePerson]);

  describe.each(MODES)('%s', (mode) => {
    // The save broadcasts its before-event; the listener undoes the change, so TypeORM
    // updates nothing and broadcasts no after-event. The listener-less update that follows,
    // in the same transaction, is the app's own and not the save's.
    it('a listener-less update after a save whose update a @BeforeUpdate listener undid is recorded', async () => {
      const people = h.ds.getRepository(NoopSavePerson);
      const person = await h.t.seed(() => people.save(people.create({ name: 'ann', score: 1 })));
      const outcome = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          const loaded = await manager.getRepository(NoopSavePerson).findOneByOrFail({ id: person.id });
          loaded.name = 'ann ';
          // The listener trims the name back to the stored one: TypeORM then updates nothing.
          await manager.getRepository(NoopSavePerson).save(loaded);
          await manager.createQueryBuilder().update(NoopSavePerson).set({ score: 5 }).where('id = :id', { id: person.id }).callListeners(false).execute();
        }),
      );
      expect(outcome.error).toBeNull();
      expect((await people.findOneByOrFail({ id: person.id })).score).toBe(5);
      expect(await h.changes()).toEqual([{ entity: 'NoopSavePerson', id: String(person.id), operation: 'update', fields: { score: { from: 1, to: 5 } } }]);
    });

    it('a save with { listeners: false } after a save whose update a @BeforeUpdate listener undid records its insert', async () => {
      const people = h.ds.getRepository(NoopSavePerson);
      const person = await h.t.seed(() => people.save(people.create({ name: 'bob', score: 1 })));
      const added = people.create({ name: `new-${mode}`, score: 2 });
      const outcome = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          const loaded = await manager.getRepository(NoopSavePerson).findOneByOrFail({ id: person.id });
          loaded.name = ' bob';
          await manager.getRepository(NoopSavePerson).save(loaded);
          await manager.getRepository(NoopSavePerson).save(added, { listeners: false });
        }),
      );
      expect(outcome.error).toBeNull();
      expect(await h.changes()).toEqual([
        {
          entity: 'NoopSavePerson',
          id: String(added.id),
          operation: 'insert',
          fields: { id: { from: null, to: added.id }, name: { from: null, to: added.name }, score: { from: null, to: 2 } },
        },
      ]);
    });
  });
});
