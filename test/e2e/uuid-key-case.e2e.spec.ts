import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CASE_ENTITIES, CaseDevice } from '../app/capture-cases-entities.js';

/**
 * A uuid primary key given in upper case (as many clients generate them). PostgreSQL's uuid
 * type (and MariaDB's) stores and returns it in lower case; SQLite stores it as given. Either
 * way the row is one entity instance: its changes carry the id the database stores, so that
 * `history()` finds its creation and its later changes together, by that id or as given.
 */
describe.each(databases())('an upper-case uuid key on %s', (kind) => {
  const h = captureApp(kind, CASE_ENTITIES);

  it.each(MODES)('%s: insert and later update are recorded under the same id', async (mode) => {
    const upper = mode === 'handler' ? '6F9619FF-8B86-D011-B42D-00C04FC964FF' : '7F9619FF-8B86-D011-B42D-00C04FC964FF';
    await h.run(mode, () => h.ds.getRepository(CaseDevice).insert({ id: upper, name: 'phone' }));
    await h.run(mode, () => h.ds.getRepository(CaseDevice).update({ id: upper }, { name: 'tablet' }));
    const stored = await h.ds.getRepository(CaseDevice).findOneByOrFail({ id: upper });
    expect(stored.name).toBe('tablet');
    expect(stored.id).toBe(kind === 'sqlite' ? upper : upper.toLowerCase());
    const ids = (await h.changes()).map((change) => [change.operation, change.id]);
    expect(ids).toEqual([
      ['insert', stored.id],
      ['update', stored.id],
    ]);
    expect(await h.t.audit.history({ type: 'CaseDevice', id: stored.id })).toHaveLength(2);
    expect(await h.t.audit.history({ type: 'CaseDevice', id: upper })).toHaveLength(2);
  });
});
