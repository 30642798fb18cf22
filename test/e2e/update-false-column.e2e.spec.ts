import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseLedger } from '../app/capture-cases-entities.js';

/**
 * `@Column({ update: false })` (an immutable account number): TypeORM never writes it in an
 * update. A `save()` of a loaded row whose property was changed in memory writes only the
 * other columns, and its record names only those.
 */
describe.each(databases())('an update: false column on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);

  it.each(MODES)('%s: save() records only what the database changed', async (mode) => {
    const ledger = await h.t.seed(() => h.ds.getRepository(CaseLedger).save({ memo: 'm', account: 'acc-1' }));
    const result = await h.run(mode, async () => {
      const loaded = await h.ds.getRepository(CaseLedger).findOneByOrFail({ id: ledger.id });
      loaded.account = 'acc-OTHER';
      loaded.memo = 'm2';
      await h.ds.getRepository(CaseLedger).save(loaded);
    });
    expect(result).toEqual({ status: mode === 'handler' ? 201 : null, error: null });
    expect(await h.ds.getRepository(CaseLedger).findOneByOrFail({ id: ledger.id })).toMatchObject({ memo: 'm2', account: 'acc-1' });
    expect(await h.changes()).toEqual([{ entity: 'CaseLedger', id: String(ledger.id), operation: 'update', fields: { memo: { from: 'm', to: 'm2' } } }]);
  });

  it.each(MODES)('%s: a save() changing only that column records nothing', async (mode) => {
    const ledger = await h.t.seed(() => h.ds.getRepository(CaseLedger).save({ memo: 'm', account: 'acc-1' }));
    await h.run(mode, async () => {
      const loaded = await h.ds.getRepository(CaseLedger).findOneByOrFail({ id: ledger.id });
      loaded.account = 'acc-OTHER';
      await h.ds.getRepository(CaseLedger).save(loaded);
    });
    expect(await h.ds.getRepository(CaseLedger).findOneByOrFail({ id: ledger.id })).toMatchObject({ account: 'acc-1' });
    expect(await h.changes()).toEqual([]);
  });
});
