import { describe, expect, it } from 'vitest';
import { databases } from '../support/test-database.js';
import { MODES, captureApp } from '../app/capture-harness.js';
import { CAPTURE_CASES_ENTITIES, CapKv } from '../app/capture-upsert-entities.js';

/**
 * The values object of an upsert is recorded by the module around the write, not by the
 * insert listener, while that write runs — and only then: the same object inserted again
 * later is an insert like any other, with its record.
 */
describe.each(databases())('a values object upserted, then inserted again, on %s', (kind) => {
  const h = captureApp(kind, CAPTURE_CASES_ENTITIES);

  describe.each(MODES)('%s', (mode) => {
    it('the later insert of the same object is recorded', async () => {
      const values = { k: `reused-${mode}`, v: '1' } as CapKv;
      const kvs = () => h.ds.getRepository(CapKv);
      await h.t.seed(async () => {
        await kvs().upsert(values, ['k']);
        await kvs().delete({ k: values.k });
      });
      const result = await h.run(mode, () => kvs().insert(values));
      expect(result.error).toBeNull();
      const stored = await kvs().findOneByOrFail({ k: values.k });
      expect(await h.changes(), 'the insert of the object upserted before').toEqual([
        { entity: 'CapKv', id: String(stored.id), operation: 'insert', fields: { id: { from: null, to: stored.id }, k: { from: null, to: values.k }, v: { from: null, to: '1' } } },
      ]);
    });
  });
});
