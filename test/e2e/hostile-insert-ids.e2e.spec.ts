import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource, type InsertResult } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { HOSTILE_INSERT_ID_ENTITIES, HiLogin, HiNote, HiReset, HiSeat } from '../app/hostile-insert-ids-entities.js';

const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;

/**
 * Inserts by query builder with `updateEntity(false)`, which the module records under the
 * key each row got: what the app gets back stays TypeORM's, a transaction's end decides,
 * secrets stay masked, and every row is recorded once.
 */
describe.each(databases())('hostile inserts with updateEntity(false) on %s', (kind) => {
  const h = captureApp(kind, HOSTILE_INSERT_ID_ENTITIES);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it('an insert in a transaction that rolls back is not recorded', async () => {
      const name = unique('rb');
      const outcome = await h.run(mode, () =>
        h.ds
          .transaction(async (manager) => {
            await manager.createQueryBuilder().insert().into(HiLogin).values({ name, password: 'x' }).updateEntity(false).execute();
            throw new Error('roll back');
          })
          .catch((error: Error) => expect(error.message).toBe('roll back')),
      );
      expect(outcome).toEqual(ok);
      expect(await h.ds.getRepository(HiLogin).findOneBy({ name })).toBeNull();
      expect(await h.changes()).toEqual([]);
    });

    it('two inserts in a committed transaction are each recorded once under their id', async () => {
      const names = [unique('tx1'), unique('tx2')];
      const outcome = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          for (const name of names) await manager.createQueryBuilder().insert().into(HiLogin).values({ name, password: 'x' }).updateEntity(false).execute();
        }),
      );
      expect(outcome).toEqual(ok);
      const stored = await Promise.all(names.map((name) => h.ds.getRepository(HiLogin).findOneByOrFail({ name })));
      expect((await h.changes()).map((change) => [change.id, change.operation])).toEqual(stored.map((row) => [String(row.id), 'insert']));
    });

    it('a secret column among the values is masked', async () => {
      const name = unique('sec');
      const password = unique('hunter2');
      expect(await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiLogin).values({ name, password }).updateEntity(false).execute())).toEqual(ok);
      const changes = await h.changes();
      expect(changes).toHaveLength(1);
      expect(changes[0]!.fields['password']).toEqual({ from: null, to: '[REDACTED]' });
      expect(JSON.stringify(await h.t.rows())).not.toContain(password);
    });

    it('a generated key named like a secret is not stored in clear', async () => {
      const email = unique('reset');
      expect(await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiReset).values({ email }).updateEntity(false).execute())).toEqual(ok);
      const stored = await h.ds.getRepository(HiReset).findOneByOrFail({ email });
      const changes = await h.changes();
      expect(changes).toHaveLength(1);
      expect(changes[0]!.id).not.toBeNull();
      expect(changes[0]!.fields['resetToken']).toEqual({ from: null, to: '[REDACTED]' });
      expect(JSON.stringify(await h.t.rows()).toLowerCase()).not.toContain(stored.resetToken.toLowerCase());
    });

    it('a composite key, one part given and one generated, is recorded whole', async () => {
      const labels = [unique('seat1'), unique('seat2')];
      expect(
        await h.run(mode, () =>
          h.ds.createQueryBuilder().insert().into(HiSeat).values([{ tenant: 1, label: labels[0] }, { tenant: 2, label: labels[1] }]).updateEntity(false).execute(),
        ),
      ).toEqual(ok);
      const stored = await Promise.all(labels.map((label) => h.ds.getRepository(HiSeat).findOneByOrFail({ label })));
      const changes = await h.changes();
      expect(changes).toHaveLength(2);
      for (const [index, row] of stored.entries()) {
        expect(changes[index]!.id).not.toBeNull();
        expect(JSON.parse(changes[index]!.id!)).toEqual({ tenant: row.tenant, id: row.id });
      }
    });

    it('the values the database completes (default, creation date, version) are recorded as by an insert that reads them back', async () => {
      const [plain, unread] = [unique('dflt-a'), unique('dflt-b')];
      expect(await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiNote).values({ name: plain }).execute())).toEqual(ok);
      const readBack = (await h.changes())[0]!;
      await h.t.clearAudit();
      expect(await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiNote).values({ name: unread }).updateEntity(false).execute())).toEqual(ok);
      const notReadBack = (await h.changes())[0]!;
      expect(Object.keys(notReadBack.fields).sort()).toEqual(Object.keys(readBack.fields).sort());
      expect(notReadBack.fields['status']).toEqual({ from: null, to: 'draft' });
    });

    it('1,000 rows in one statement are each recorded once under their own id', async () => {
      const prefix = unique('k');
      const values = Array.from({ length: 1000 }, (_, index) => ({ name: `${prefix}-${index}`, password: 'x' }));
      expect(await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiLogin).values(values).updateEntity(false).execute())).toEqual(ok);
      const stored = await h.ds.getRepository(HiLogin).createQueryBuilder('l').where('l.name LIKE :p', { p: `${prefix}-%` }).getMany();
      expect(stored).toHaveLength(1000);
      const byName = new Map(stored.map((row) => [row.name, String(row.id)]));
      const changes = await h.changes();
      expect(changes).toHaveLength(1000);
      expect(changes.map((change) => [change.id, (change.fields['name'] as { to: unknown }).to])).toEqual(values.map((row) => [byName.get(row.name), row.name]));
    });

    it('one value object inserted by concurrent statements: each row recorded once, under its id', async () => {
      const values = { name: unique('shared'), password: 'x' };
      const outcome = await h.run(mode, () =>
        Promise.all(Array.from({ length: 8 }, () => h.ds.createQueryBuilder().insert().into(HiLogin).values(values).updateEntity(false).execute())),
      );
      expect(outcome).toEqual(ok);
      const stored = await h.ds.getRepository(HiLogin).find({ where: { name: values.name }, order: { id: 'ASC' } });
      expect(stored).toHaveLength(8);
      const ids = (await h.changes()).map((change) => change.id);
      expect(ids.sort()).toEqual(stored.map((row) => String(row.id)).sort());
    });

    it('orIgnore(): only the row inserted is recorded, under its id', async () => {
      const [old, fresh] = [unique('ig-old'), unique('ig-new')];
      await h.t.seed(() => h.ds.getRepository(HiNote).save({ name: old }));
      expect(
        await h.run(mode, () => h.ds.createQueryBuilder().insert().into(HiNote).values([{ name: old }, { name: fresh }]).orIgnore().updateEntity(false).execute()),
      ).toEqual(ok);
      const inserted = await h.ds.getRepository(HiNote).findOneByOrFail({ name: fresh });
      expect((await h.changes()).map((change) => [change.id, change.operation, change.fields['name']])).toEqual([[String(inserted.id), 'insert', { from: null, to: fresh }]]);
    });

    it('orUpdate(): the row updated and the row inserted are each recorded under their id', async () => {
      const [old, fresh] = [unique('up-old'), unique('up-new')];
      const existing = await h.t.seed(() => h.ds.getRepository(HiNote).save({ name: old }));
      expect(
        await h.run(mode, () =>
          h.ds
            .createQueryBuilder()
            .insert()
            .into(HiNote)
            .values([
              { name: old, status: 'done' },
              { name: fresh, status: 'done' },
            ])
            .orUpdate(['status'], ['name'])
            .updateEntity(false)
            .execute(),
        ),
      ).toEqual(ok);
      const inserted = await h.ds.getRepository(HiNote).findOneByOrFail({ name: fresh });
      expect((await h.changes()).map((change) => [change.id, change.operation]).sort()).toEqual(
        [
          [String(existing.id), 'update'],
          [String(inserted.id), 'insert'],
        ].sort(),
      );
    });
  });

  // What the app gets back: the module asks RETURNING of the key, but the result stays what TypeORM gives without it.
  describe('the InsertResult the app gets', () => {
    let plain: DataSource;
    beforeAll(async () => {
      plain = await new DataSource({ ...h.db.options, entities: HOSTILE_INSERT_ID_ENTITIES } as never).initialize();
    });
    afterAll(async () => {
      await plain?.destroy();
    });
    const shape = (raw: unknown): unknown =>
      Array.isArray(raw) ? raw.map((row: unknown) => (row && typeof row === 'object' ? Object.keys(row).sort() : typeof row)) : raw && typeof raw === 'object' ? Object.keys(raw).sort() : typeof raw;
    const insert = (ds: DataSource, returning?: string[] | string): Promise<InsertResult> => {
      const qb = ds.createQueryBuilder().insert().into(HiLogin).values({ name: unique('raw'), password: 'x' }).updateEntity(false);
      return (returning ? qb.returning(returning) : qb).execute();
    };

    // SQLite has no RETURNING: nothing is asked of it there.
    it.skipIf(kind === 'sqlite')('without returning(): raw has the shape TypeORM gives (MariaDB: the OK packet, affectedRows and insertId)', async () => {
      const expected = await insert(plain);
      const actual = await insert(h.ds);
      expect(shape(actual.raw)).toEqual(shape(expected.raw));
    });

    it.skipIf(kind === 'sqlite')('with returning([\'name\']): raw holds the columns asked for, no others', async () => {
      const actual = await insert(h.ds, ['name']);
      expect(shape(actual.raw)).toEqual([['name']]);
    });

    it.skipIf(kind === 'sqlite')('with returning(\'name\'): the insert is still recorded under its id, and raw holds the columns asked for', async () => {
      const result = await insert(h.ds, kind === 'postgres' ? '"name"' : '`name`');
      expect(shape(result.raw)).toEqual([['name']]);
      const changes = await h.changes();
      expect(changes).toHaveLength(1);
      expect(changes[0]!.id).not.toBeNull();
    });
  });
});
