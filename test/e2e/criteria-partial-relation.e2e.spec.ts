import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { captureApp, MODES } from '../app/capture-harness.js';
import { EdgeOwner, EdgeThing } from '../app/capture-edge-entities.js';

/**
 * update(criteria, { owner }) past `maxCriteriaRows`: the rows past the bound are recorded
 * as one partial change holding the values set, read as a full capture reads them: a to-one
 * relation is its related id, never the related entity (whose column secret by its database
 * name only, `@Column({ name: 'api_token' }) handle`, would be stored in clear).
 */
describe.each(databases())('partial change of an update setting a to-one on %s', (kind) => {
  const h = captureApp(kind, [EdgeOwner, EdgeThing], { maxCriteriaRows: 1 });

  const seed = (grp: string) =>
    h.t.seed(async () => {
      const created = await h.ds.getRepository(EdgeOwner).save({ label: 'acme', handle: 'tok_LIVE_SECRET_1234' });
      await h.ds.getRepository(EdgeThing).save([{ grp }, { grp }, { grp }]);
      return created;
    });

  it.each(MODES)('%s: the related entity is recorded by id, its secret column never in clear', async (mode) => {
    const grp = `g-${mode}`;
    const owner = await seed(grp);
    const result = await h.run(mode, () => h.ds.getRepository(EdgeThing).update({ grp }, { owner }));
    expect(result.error).toBeNull();
    const rows = await h.t.rows();
    expect(JSON.stringify(rows.map((row) => row.changes))).not.toContain('tok_LIVE_SECRET_1234');
    const partial = (await h.changes()).find((change) => change.partial);
    expect(partial?.fields).toEqual({ owner: { to: owner.id } });
  });

  it.each(MODES)('%s: a to-one set by its id, or to null, is recorded the same way', async (mode) => {
    const grp = `i-${mode}`;
    const owner = await seed(grp);
    expect((await h.run(mode, () => h.ds.getRepository(EdgeThing).update({ grp }, { owner: { id: owner.id } }))).error).toBeNull();
    expect((await h.changes()).find((change) => change.partial)?.fields).toEqual({ owner: { to: owner.id } });
    await h.t.clearAudit();
    expect((await h.run(mode, () => h.ds.getRepository(EdgeThing).update({ grp }, { owner: null }))).error).toBeNull();
    expect((await h.changes()).find((change) => change.partial)?.fields).toEqual({ owner: { to: null } });
  });
});
