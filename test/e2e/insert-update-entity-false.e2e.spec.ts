import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InsertResult } from 'typeorm';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseTicket, CaseTag } from '../app/capture-cases-entities.js';

/**
 * An insert by query builder that does not read generated values back
 * (`insert().values(…).updateEntity(false).execute()`): TypeORM reports no generated key to
 * its listeners. Each row it inserts is recorded under its real id all the same, with its
 * values, and the value objects the app passed are left as `updateEntity(false)` leaves them.
 */
describe.each(databases())('insert().updateEntity(false) on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };

    it.each([
      ['an increment key', CaseTag],
      ['a uuid key', CaseTicket],
    ] as const)('one row with %s is recorded under its id', async (_, target) => {
      const name = `ue1-${mode}`;
      const values = { name };
      let result: InsertResult | undefined;
      const outcome = await h.run(mode, async () => {
        result = await h.ds.createQueryBuilder().insert().into(target).values(values).updateEntity(false).execute();
      });
      expect(outcome).toEqual(ok);
      const stored = await h.ds.getRepository<{ id: number | string; name: string }>(target).findOneByOrFail({ name });
      expect(await h.changes()).toEqual([
        { entity: target.name, id: String(stored.id), operation: 'insert', fields: { id: { from: null, to: stored.id }, name: { from: null, to: name } } },
      ]);
      expect(values).toEqual({ name });
      expect(result!.identifiers).toEqual([{ id: stored.id }]);
    });

    it.each([
      ['an increment key', CaseTag],
      ['a uuid key', CaseTicket],
    ] as const)('three rows with %s in one statement are each recorded under their own id', async (_, target) => {
      const names = [`ue-a-${mode}`, `ue-b-${mode}`, `ue-c-${mode}`];
      const values = names.map((name) => ({ name }));
      const repository = h.ds.getRepository<{ id: number | string; name: string }>(target);
      let result: InsertResult | undefined;
      const outcome = await h.run(mode, async () => {
        result = await repository.createQueryBuilder().insert().values(values).updateEntity(false).execute();
      });
      expect(outcome).toEqual(ok);
      const stored = await Promise.all(names.map((name) => repository.findOneByOrFail({ name })));
      expect(new Set(stored.map((row) => row.id)).size).toBe(3);
      expect(await h.changes()).toEqual(
        stored.map((row) => ({ entity: target.name, id: String(row.id), operation: 'insert', fields: { id: { from: null, to: row.id }, name: { from: null, to: row.name } } })),
      );
      expect(values).toEqual(names.map((name) => ({ name })));
      expect(result!.identifiers).toEqual(stored.map((row) => ({ id: row.id })));
    });

    // On PostgreSQL TypeORM leaves a generated increment key out of the insert: the row given one gets another, and is recorded under it.
    it('a row given its key among rows whose keys are generated: each row is recorded under its own id or none, never another\'s', async () => {
      const names = [`ue-m1-${mode}`, `ue-m2-${mode}`, `ue-m3-${mode}`];
      const given = 100_000 + Math.floor(Math.random() * 100_000);
      const tags = h.ds.getRepository(CaseTag);
      const outcome = await h.run(mode, () =>
        tags.createQueryBuilder().insert().values([{ name: names[0] }, { id: given, name: names[1] }, { name: names[2] }]).updateEntity(false).execute(),
      );
      expect(outcome).toEqual(ok);
      const stored = await Promise.all(names.map((name) => tags.findOneByOrFail({ name })));
      const recorded = (row: CaseTag) => ({ entity: 'CaseTag', id: String(row.id), operation: 'insert', fields: { id: { from: null, to: row.id }, name: { from: null, to: row.name } } });
      if (kind === 'postgres') {
        expect(await h.changes()).toEqual(stored.map(recorded));
      } else {
        // SQLite, and MariaDB (where RETURNING would turn the app's result, the server's OK
        // packet, into rows): the ids counted from the one reported are wrong once a row gave its own.
        expect(stored[1]!.id).toBe(given);
        const unknown = (row: CaseTag) => ({ entity: 'CaseTag', id: null, operation: 'insert', fields: { name: { from: null, to: row.name } }, partial: true });
        const changes = await h.changes();
        expect(changes).toHaveLength(3);
        expect(changes).toEqual(expect.arrayContaining([unknown(stored[0]!), recorded(stored[1]!), unknown(stored[2]!)]));
      }
    });
  });
});

/**
 * MySQL (and MariaDB before 10.5) has no `INSERT … RETURNING`: the ids of a multi-row
 * insert are counted from the first one it reports, which holds only while the server gives
 * a statement's rows consecutive ids. Run on MariaDB with its RETURNING left unused.
 */
describe.each(databases().filter((kind) => kind === 'mariadb'))('insert().updateEntity(false) without RETURNING on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);
  const capabilities = () => (h.ds.driver as unknown as { _isReturningSqlSupported: { insert: boolean } })._isReturningSqlSupported;
  beforeAll(() => {
    capabilities().insert = false;
  });
  afterAll(() => {
    capabilities().insert = true;
  });

  describe.each(MODES)('%s', (mode) => {
    const ok = { status: mode === 'handler' ? 201 : null, error: null };
    const insert = (names: string[], step: number) =>
      h.ds.transaction(async (manager) => {
        await manager.query(`SET SESSION auto_increment_increment = ${step}`);
        try {
          await manager.createQueryBuilder().insert().into(CaseTag).values(names.map((name) => ({ name }))).updateEntity(false).execute();
        } finally {
          await manager.query('SET SESSION auto_increment_increment = 1');
        }
      });

    it('three rows given consecutive ids are each recorded under their own', async () => {
      const names = [`ur-a-${mode}`, `ur-b-${mode}`, `ur-c-${mode}`];
      expect(await h.run(mode, () => insert(names, 1))).toEqual(ok);
      const stored = await Promise.all(names.map((name) => h.ds.getRepository(CaseTag).findOneByOrFail({ name })));
      expect(await h.changes()).toEqual(
        stored.map((row) => ({ entity: 'CaseTag', id: String(row.id), operation: 'insert', fields: { id: { from: null, to: row.id }, name: { from: null, to: row.name } } })),
      );
    });

    it('three rows given ids two apart (auto_increment_increment 2) are recorded without ids, not under wrong ones', async () => {
      const names = [`ur-d-${mode}`, `ur-e-${mode}`, `ur-f-${mode}`];
      expect(await h.run(mode, () => insert(names, 2))).toEqual(ok);
      const stored = await Promise.all(names.map((name) => h.ds.getRepository(CaseTag).findOneByOrFail({ name })));
      expect(stored[1]!.id - stored[0]!.id).toBe(2);
      expect(await h.changes()).toEqual(names.map((name) => ({ entity: 'CaseTag', id: null, operation: 'insert', fields: { name: { from: null, to: name } }, partial: true })));
    });
  });
});
