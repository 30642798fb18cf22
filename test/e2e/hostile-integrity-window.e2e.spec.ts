// Hostile test: an event sequenced but not yet under a signed checkpoint, rewritten
// together with its leaf by an administrator, is signed by the next checkpoint as if true.
// This is the documented window (docs/integrity.md, threat model: an event is protected
// once a checkpoint covers it, within checkpointEvery); the test pins both sides of it.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity, AuditTreeEntity } from '../../lib/index.js';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { AuditIntegrator } from '../../lib/integrity/integrator.js';
import { leafHash } from '../../lib/integrity/merkle.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { dropAppendOnlyGuards } from '../support/integrity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('the window between sequencing and the next checkpoint on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: 'audit.example.test/window', sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } } });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the window: a rewrite of an event and its leaf before a checkpoint covers it is signed over; after, the same rewrite is reported', async () => {
    for (let i = 1; i <= 4; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}` });
    await t.audit.checkpoint(); // size 4
    await t.audit.log({ action: 'order.refunded', reason: 'refund of 10 EUR' });
    const outcome = await t.app.get(AuditIntegrator).batch(0, false); // sequenced (seq 5), no checkpoint due
    expect(outcome).toMatchObject({ sequenced: 1, treeSize: 5 });
    expect(outcome.checkpoint).toBeUndefined();

    // The administrator rewrites event 5 and its leaf (leaf 4 completes no interior node).
    await dropAppendOnlyGuards(t.dataSource);
    const logs = t.dataSource.getRepository(AuditLogEntity);
    const event = (await logs.findOneBy({ seq: 5 }))!;
    await logs.update({ id: event.id }, { reason: 'refund of 10000 EUR' });
    const forged = (await logs.findOneBy({ seq: 5 }))!;
    await t.dataSource.getRepository(AuditTreeEntity).update({ level: 0, index: 4 }, { hash: leafHash(Buffer.from(canonicalEventJson(forged))).toString('hex') });

    const signed = await t.audit.checkpoint(); // the integrator signs size 5 over the rewritten leaf
    expect(signed.treeSize).toBe(5);
    expect((await t.audit.verify()).ok, 'inside the window: the documented limit').toBe(true);

    // Once covered by a checkpoint, the same kind of rewrite is reported.
    await logs.update({ id: event.id }, { reason: 'refund of 1 EUR' });
    const again = (await logs.findOneBy({ seq: 5 }))!;
    await t.dataSource.getRepository(AuditTreeEntity).update({ level: 0, index: 4 }, { hash: leafHash(Buffer.from(canonicalEventJson(again))).toString('hex') });
    const result = await t.audit.verify();
    expect(result.ok).toBe(false);
    // Event and leaf agree, and no stored node lies over leaf 4: the data alone cannot tell this
    // from a checkpoint that does not extend its predecessor, which is how it is reported, the
    // message naming both.
    expect(result.problems.map((problem) => problem.kind)).toEqual(['inconsistent']);
    expect(result.problems[0]).toMatchObject({ treeSize: 5, seq: 5, message: expect.stringContaining('rewritten together with their tree rows') });
  });
});
