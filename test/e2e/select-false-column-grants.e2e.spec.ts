// A `select: false` column the application's database role may write but not read (a
// column-level GRANT: the classic write-only password hash). TypeORM's save() and remove()
// never read it, so they work; the module now reads select:false columns before a save()
// that changes them and before a remove(). Expected: the app's write still succeeds (the
// record may lack the unreadable value), as it does without the module.
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, describe, expect, it } from 'vitest';
import { captureApp, MODES } from '../app/capture-harness.js';
import { EdgeAccount } from '../app/capture-edge-entities.js';
import { databases } from '../support/test-database.js';

const ROLE = `audit_limited_${randomBytes(4).toString('hex')}`;

describe.each(databases().filter((kind) => kind === 'postgres'))('a write-only select:false column, on %s', (kind) => {
  const h = captureApp(kind, [EdgeAccount]);
  const schema = () => (h.db.options as { schema: string }).schema;
  let granted = false;
  const grant = async () => {
    if (granted) return;
    granted = true;
    const s = `"${schema()}"`;
    await h.ds.query(`CREATE ROLE ${ROLE} NOLOGIN`);
    await h.ds.query(`GRANT USAGE ON SCHEMA ${s} TO ${ROLE}`);
    await h.ds.query(`GRANT ALL ON ALL TABLES IN SCHEMA ${s} TO ${ROLE}`);
    await h.ds.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA ${s} TO ${ROLE}`);
    await h.ds.query(`REVOKE SELECT ON ${s}."edge_account" FROM ${ROLE}`);
    await h.ds.query(`GRANT SELECT ("id", "login") ON ${s}."edge_account" TO ${ROLE}`);
  };
  afterAll(async () => {
    if (!granted) return;
    await h.ds.query(`DROP OWNED BY ${ROLE}`).catch(() => undefined);
    await h.ds.query(`DROP ROLE IF EXISTS ${ROLE}`).catch(() => undefined);
  });

  it('control: without the module, save() and remove() as that role succeed', async () => {
    await grant();
    const plain = new DataSource({ ...h.db.options, entities: [EdgeAccount], synchronize: false, logging: false } as never);
    await plain.initialize();
    try {
      const account = await plain.getRepository(EdgeAccount).save({ login: 'ctl', passwordHash: 'h0' });
      await plain.transaction(async (manager) => {
        await manager.query(`SET LOCAL ROLE ${ROLE}`);
        const loaded = await manager.getRepository(EdgeAccount).findOneByOrFail({ id: account.id });
        loaded.passwordHash = 'h1';
        await manager.getRepository(EdgeAccount).save(loaded);
        await manager.getRepository(EdgeAccount).remove(loaded);
      });
      expect(await plain.getRepository(EdgeAccount).findOneBy({ id: account.id })).toBeNull();
    } finally {
      await plain.destroy();
    }
  });

  describe.each(MODES)('%s', (mode) => {
    it.each(['save', 'remove'] as const)('%s() as that role succeeds with the module', async (op) => {
      await grant();
      const account = await h.t.seed(() => h.ds.getRepository(EdgeAccount).save({ login: `${op}-${mode}`, passwordHash: 'h0' }));
      const result = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          await manager.query(`SET LOCAL ROLE ${ROLE}`);
          const repo = manager.getRepository(EdgeAccount);
          const loaded = await repo.findOneByOrFail({ id: account.id });
          if (op === 'save') {
            loaded.passwordHash = 'h1';
            await repo.save(loaded);
          } else await repo.remove(loaded);
        }),
      );
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
    });

    it('update(criteria) of a readable column as that role is recorded row by row (as before select:false columns were read)', async () => {
      await grant();
      const account = await h.t.seed(() => h.ds.getRepository(EdgeAccount).save({ login: `crit-${mode}`, passwordHash: 'h0' }));
      const result = await h.run(mode, () =>
        h.ds.transaction(async (manager) => {
          await manager.query(`SET LOCAL ROLE ${ROLE}`);
          await manager.getRepository(EdgeAccount).update({ id: account.id }, { login: `crit-${mode}-2` });
        }),
      );
      expect({ status: result.status, error: result.error === null ? null : String(result.error) }).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
      expect((await h.changes()).filter((c) => c.entity === 'EdgeAccount')).toEqual([
        { entity: 'EdgeAccount', id: String(account.id), operation: 'update', fields: { login: { from: `crit-${mode}`, to: `crit-${mode}-2` } } },
      ]);
    });
  });
});
