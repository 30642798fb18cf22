import { generateKeyPairSync } from 'node:crypto';
import type { AuditCheckpointEntity, AuditLogEntity, AuditTreeEntity } from '../../../lib/index.js';
import { canonicalEventJson } from '../../../lib/integrity/canonical-json.js';
import { createSigner, formatCheckpoint, signNote } from '../../../lib/integrity/checkpoint-note.js';
import { leafHash, nodeHash, rootHash } from '../../../lib/integrity/merkle.js';
import { findProblems } from './integrity-check.js';

const ORIGIN = 'check.test/log';

/** A right log of `n` events: rows, leaves, higher nodes, and checkpoints at `sizes`. */
function log(n: number, sizes: readonly number[], privateKey: ReturnType<typeof generateKeyPairSync>['privateKey']) {
  const rows = Array.from({ length: n }, (_, i) => ({
    id: `0190f0f0-0000-7000-8000-${String(i).padStart(12, '0')}`,
    occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
    action: 'item.created',
    outcome: 'success',
    kind: 'intent',
    actorType: 'user',
    actorId: 'alice',
    actorDisplay: null,
    source: 'http',
    ip: null,
    userAgent: null,
    method: 'POST',
    route: '/items',
    path: '/items',
    requestId: `r-${i}`,
    targetType: null,
    targetId: null,
    changes: null,
    context: null,
    reason: null,
    error: null,
    seq: i + 1,
  })) as unknown as AuditLogEntity[];
  const hashes = rows.map((row) => leafHash(Buffer.from(canonicalEventJson(row), 'utf8')));
  const leaves = hashes.map((hash, i) => ({ level: 0, index: i, hash: hash.toString('hex'), eventId: rows[i]!.id })) as AuditTreeEntity[];
  const nodes: AuditTreeEntity[] = [];
  for (let level = 1, below = hashes; below.length >= 2; level++) {
    const here = Array.from({ length: Math.floor(below.length / 2) }, (_, i) => nodeHash(below[2 * i]!, below[2 * i + 1]!));
    here.forEach((hash, index) => nodes.push({ level, index, hash: hash.toString('hex'), eventId: null }));
    below = here;
  }
  const signer = createSigner(ORIGIN, privateKey);
  const checkpoints = sizes.map((treeSize) => {
    const root = rootHash(hashes.slice(0, treeSize));
    return { treeSize, rootHash: root.toString('hex'), note: signNote(formatCheckpoint({ origin: ORIGIN, treeSize, rootHash: root }), signer), createdAt: new Date() };
  }) as AuditCheckpointEntity[];
  return { rows, leaves, nodes, checkpoints };
}

/**
 * Runs the integrity check on a hand-made log, right and then broken in one way at a
 * time, so that a runner whose check could not see a defect fails before it reports
 * "problems=0". Returns the mismatches (none: the check works).
 */
export function checkIntegrityCheck(): string[] {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519').privateKey;
  const options = { origin: ORIGIN, publicKey };
  const mismatches: string[] = [];
  const expect = (name: string, kind: string | undefined, change: (l: ReturnType<typeof log>) => void) => {
    const l = log(13, [5, 8, 13], privateKey);
    change(l);
    const problems = findProblems(l.rows, l.leaves, l.nodes, l.checkpoints, options);
    if (kind === undefined ? problems.length > 0 : !problems.some((problem) => problem.startsWith(`${kind}:`))) {
      mismatches.push(`${name}: expected ${kind ?? 'no problem'}, got ${problems.length === 0 ? 'none' : problems.join(' | ')}`);
    }
  };
  expect('a right log', undefined, () => undefined);
  expect('an event without seq', 'no seq', (l) => void (l.rows[12]!.seq = null));
  expect('two events with one seq', 'duplicate seq', (l) => void (l.rows[12]!.seq = 12));
  expect('an event edited after it was hashed', 'leaf hash', (l) => void (l.rows[3]!.reason = 'edited'));
  expect('a leaf naming another event', 'leaf event', (l) => void (l.leaves[2]!.eventId = l.rows[7]!.id));
  expect('a missing leaf', 'leaf count', (l) => void l.leaves.pop());
  expect('a missing node', 'missing node', (l) => void l.nodes.shift());
  expect('a wrong node', 'node hash', (l) => void (l.nodes[1]!.hash = '00'.repeat(32)));
  expect('a checkpoint over another root', 'checkpoint root', (l) => void (l.checkpoints[1]!.rootHash = '00'.repeat(32)));
  expect('a checkpoint signed by another key', 'checkpoint signature', (l) => {
    const cp = l.checkpoints[0]!;
    cp.note = signNote(cp.note.slice(0, cp.note.lastIndexOf('\n\n') + 1), createSigner(ORIGIN, other));
  });
  return mismatches;
}
