import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { captureApp, MODES } from '../app/capture-harness.js';
import { EdgeTag } from '../app/capture-edge-entities.js';

/**
 * A query-builder write whose WHERE names the table (`edge_tag.name = :n`): valid SQL that
 * TypeORM sends as written (its UPDATE and DELETE name the table without an alias). The
 * module's read of the rows before the write takes the same condition: it reads the table
 * under its own name, so the rows are recorded one by one with their before values. A read
 * that fails all the same never fails the application's write (on PostgreSQL, where a failed
 * statement aborts the transaction, it runs in a savepoint): the write is recorded as a
 * partial change.
 */
describe.each(databases())('a query-builder write with a table-qualified WHERE on %s', (kind) => {
  const h = captureApp(kind, [EdgeTag]);
  /** The schema (PostgreSQL), database (MariaDB) or attached database (SQLite) holding the table. */
  const schema = () => {
    const options = h.db.options as { schema?: string; database?: string };
    return kind === 'postgres' ? options.schema! : kind === 'sqlite' ? 'main' : options.database!;
  };

  it('the same write succeeds on a data source without the module (control)', async () => {
    const plain = new DataSource({ ...h.db.options, entities: [EdgeTag], synchronize: kind === 'sqlite', logging: false } as never);
    await plain.initialize();
    try {
      const tag = await plain.getRepository(EdgeTag).save({ name: 'ctl' });
      await plain.getRepository(EdgeTag).createQueryBuilder().update().set({ name: 'ctl2' }).where('edge_tag.name = :n', { n: 'ctl' }).execute();
      expect((await plain.getRepository(EdgeTag).findOneByOrFail({ id: tag.id })).name).toBe('ctl2');
    } finally {
      await plain.destroy();
    }
  });

  describe.each(MODES)('%s', (mode) => {
    it('update: the write succeeds and the row is recorded with its before value', async () => {
      const name = `qw-${mode}`;
      const tag = await h.t.seed(() => h.ds.getRepository(EdgeTag).save({ name }));
      const result = await h.run(mode, () =>
        h.ds.getRepository(EdgeTag).createQueryBuilder().update().set({ name: `${name}-2` }).where('edge_tag.name = :n', { n: name }).execute(),
      );
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
      expect((await h.ds.getRepository(EdgeTag).findOneByOrFail({ id: tag.id })).name).toBe(`${name}-2`);
      expect(await h.changes()).toEqual([{ entity: 'EdgeTag', id: String(tag.id), operation: 'update', fields: { name: { from: name, to: `${name}-2` } } }]);
    });

    it('delete: the write succeeds and the row is recorded with its values', async () => {
      const name = `qd-${mode}`;
      const tag = await h.t.seed(() => h.ds.getRepository(EdgeTag).save({ name }));
      const result = await h.run(mode, () => h.ds.getRepository(EdgeTag).createQueryBuilder().delete().where('edge_tag.name = :n', { n: name }).execute());
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
      expect(await h.ds.getRepository(EdgeTag).findOneBy({ id: tag.id })).toBeNull();
      expect(await h.changes()).toEqual([
        { entity: 'EdgeTag', id: String(tag.id), operation: 'delete', fields: { id: { from: tag.id, to: null }, name: { from: name, to: null } } },
      ]);
    });

    // PostgreSQL does not take `<schema>.<table>.<column>` for an aliased table: the read fails, in its savepoint.
    it('a schema-qualified WHERE: the write succeeds, recorded by row, or as partial where the read fails (PostgreSQL)', async () => {
      const name = `qs-${mode}`;
      const tag = await h.t.seed(() => h.ds.getRepository(EdgeTag).save({ name }));
      const result = await h.run(mode, () =>
        h.ds.getRepository(EdgeTag).createQueryBuilder().update().set({ name: `${name}-2` }).where(`${schema()}.edge_tag.name = :n`, { n: name }).execute(),
      );
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
      expect((await h.ds.getRepository(EdgeTag).findOneByOrFail({ id: tag.id })).name).toBe(`${name}-2`);
      expect(await h.changes()).toEqual([
        kind === 'postgres'
          ? { entity: 'EdgeTag', id: null, operation: 'update', fields: { name: { to: `${name}-2` } }, partial: true, count: 1 }
          : { entity: 'EdgeTag', id: String(tag.id), operation: 'update', fields: { name: { from: name, to: `${name}-2` } } },
      ]);
    });

    it('in the application’s transaction, such a write leaves its earlier and later writes alone', async () => {
      const name = `qt-${mode}`;
      const [first, second] = await h.t.seed(() => h.ds.getRepository(EdgeTag).save([{ name }, { name: `${name}-b` }]));
      const result = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          await manager.getRepository(EdgeTag).update({ id: first!.id }, { name: `${name}-1` });
          await manager.getRepository(EdgeTag).createQueryBuilder().update().set({ name: `${name}-b2` }).where(`${schema()}.edge_tag.name = :n`, { n: `${name}-b` }).execute();
          await manager.getRepository(EdgeTag).update({ id: first!.id }, { name: `${name}-3` });
        }),
      );
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
      expect((await h.ds.getRepository(EdgeTag).findOneByOrFail({ id: first!.id })).name).toBe(`${name}-3`);
      expect((await h.ds.getRepository(EdgeTag).findOneByOrFail({ id: second!.id })).name).toBe(`${name}-b2`);
      const changes = await h.changes();
      expect(changes).toContainEqual({ entity: 'EdgeTag', id: String(first!.id), operation: 'update', fields: { name: { from: name, to: `${name}-3` } } });
      expect(changes).toContainEqual(
        kind === 'postgres'
          ? { entity: 'EdgeTag', id: null, operation: 'update', fields: { name: { to: `${name}-b2` } }, partial: true, count: 1 }
          : { entity: 'EdgeTag', id: String(second!.id), operation: 'update', fields: { name: { from: `${name}-b`, to: `${name}-b2` } } },
      );
    });
  });
});
