import { expect } from 'vitest';
import { AuditLogEntity, AuditTreeEntity } from '../../lib/index.js';
import { canonicalEventJson } from '../../lib/integrity/canonical-json.js';
import { leafHash } from '../../lib/integrity/merkle.js';
import type { TestApp } from '../app/create-test-app.js';

/**
 * The whole log is sequenced once: `events` events with a seq in one gapless run, each
 * leaf of the tree the hash of its own event, and `verify()` finding nothing.
 */
export async function expectWholeTree(t: TestApp, events: number): Promise<void> {
  const rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
  expect(rows).toHaveLength(events);
  expect(rows.map((row) => row.seq)).toEqual(rows.map((_, i) => i + 1));
  const leaves = await t.dataSource.getRepository(AuditTreeEntity).find({ where: { level: 0 }, order: { index: 'ASC' } });
  expect(leaves.map((leaf) => leaf.eventId)).toEqual(rows.map((row) => row.id));
  expect(leaves.map((leaf) => leaf.hash)).toEqual(rows.map((row) => leafHash(Buffer.from(canonicalEventJson(row))).toString('hex')));
  const verified = await t.audit.verify();
  expect(verified.problems).toEqual([]);
  expect(verified).toMatchObject({ ok: true, treeSize: events });
}
