import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapMembership } from '../app/capture-upsert-entities.js';

/**
 * A row deleted and inserted again under the same key in one transaction (a membership
 * replaced: remove, then save with a new role). The row existed before with role 'member'
 * and exists after with role 'owner': the net change keeps the before values.
 */
describe.each(databases())('delete then re-insert of one key in a transaction on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

  it.each(MODES)('%s: the values the row had before are recorded', async (mode) => {
    const org = mode === 'handler' ? 801 : 802;
    await h.t.seed(() => h.ds.getRepository(CapMembership).save({ orgId: org, userId: 1, role: 'member' }));
    const result = await h.run(mode, () =>
      h.ds.transaction(async (manager) => {
        const memberships = manager.getRepository(CapMembership);
        await memberships.remove(await memberships.findOneByOrFail({ orgId: org, userId: 1 }));
        await memberships.save({ orgId: org, userId: 1, role: 'owner' });
      }),
    );
    expect(result.error).toBeNull();
    expect(await h.ds.getRepository(CapMembership).findBy({ orgId: org })).toEqual([{ orgId: org, userId: 1, role: 'owner' }]);
    const changes = await h.changes();
    const roles = changes.flatMap((change) => Object.entries(change.fields).filter(([name]) => name === 'role').map(([, value]) => value));
    // 'member' (the value before) is a `from`.
    expect(roles).toContainEqual(expect.objectContaining({ from: 'member' }));
  });
});
