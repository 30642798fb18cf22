import type { KeyObject } from 'node:crypto';
import { DataSource, MoreThan } from 'typeorm';
import { AuditCheckpointEntity, AuditEntities, AuditLogEntity, AuditTreeEntity, bindUtcDates, type AuditCheckpoint } from '../../../lib/index.js';
import { canonicalEventJson } from '../../../lib/integrity/canonical-json.js';
import { createVerifier, openNote, parseCheckpoint } from '../../../lib/integrity/checkpoint-note.js';
import { leafHash, nodeHash, rootHash } from '../../../lib/integrity/merkle.js';
import type { FaultDatabase } from './fault-database.js';

/** What `checkIntegrity` found. */
export interface IntegrityCheckResult {
  /** Rows in `audit_log`. */
  events: number;
  /** Leaves in `audit_tree`. */
  treeSize: number;
  /** Rows in `audit_checkpoint`. */
  checkpoints: number;
  /** Everything wrong, one line each (the first few of each kind, then a count); empty when all holds. */
  problems: string[];
  /** How many problems were found (`problems` lists only the first few of each kind). */
  problemCount: number;
}

export interface IntegrityCheckOptions {
  /** `integrity.origin` of the app, which is also its key name. */
  origin: string;
  /** The public half of the app's signing key. */
  publicKey: KeyObject;
  /** What `AuditService.checkpoint()` returned at the end: must cover every event. */
  checkpoint?: AuditCheckpoint;
}

/** Problems listed per kind before the rest are only counted. */
const EXAMPLES = 5;

/**
 * Checks the tamper-evidence tables of a fault scenario's database directly, reading
 * through TypeORM with the module's entities (dates and JSON come back as the integrator
 * read them when it hashed the events):
 * - every `audit_log` row has a `seq`, and the seqs are exactly 1..N;
 * - `audit_tree` level 0 holds leaves 0..N-1, leaf i naming the event of seq i+1, its hash
 *   the leaf hash of that event's canonical JSON;
 * - every higher node is stored once complete, and only then, with the hash of its two
 *   children;
 * - every `audit_checkpoint` row's root is the root of its first `tree_size` leaves, and
 *   its note is signed by the key, names the origin, that size and that root;
 * - the final `checkpoint()` covers all N events with the root of the whole tree.
 *
 * Written against the tables so that it does not trust the code it checks; it can later
 * give way to `AuditService.verify()`.
 */
export async function checkIntegrity(db: FaultDatabase, options: IntegrityCheckOptions): Promise<IntegrityCheckResult> {
  const dataSource = bindUtcDates(await new DataSource({ ...db.dataSourceOptions(), entities: [...AuditEntities], logging: false }).initialize());
  try {
    const [rows, leaves, nodes, checkpoints] = await Promise.all([
      dataSource.getRepository(AuditLogEntity).find(),
      dataSource.getRepository(AuditTreeEntity).find({ where: { level: 0 }, order: { index: 'ASC' } }),
      dataSource.getRepository(AuditTreeEntity).find({ where: { level: MoreThan(0) } }),
      dataSource.getRepository(AuditCheckpointEntity).find({ order: { treeSize: 'ASC' } }),
    ]);
    const problems = findProblems(rows, leaves, nodes, checkpoints, options);
    const problemCount = problems.reduce((sum, line) => sum + Number(/^[^:]+: … and (\d+) more$/.exec(line)?.[1] ?? 1), 0);
    return { events: rows.length, treeSize: leaves.length, checkpoints: checkpoints.length, problems, problemCount };
  } finally {
    await dataSource.destroy();
  }
}

/** The problems of the tables' rows as read (see `checkIntegrity`); exported for integrity-check.check.ts. */
export function findProblems(
  rows: readonly AuditLogEntity[],
  leaves: readonly AuditTreeEntity[],
  nodes: readonly AuditTreeEntity[],
  checkpoints: readonly AuditCheckpointEntity[],
  options: IntegrityCheckOptions,
): string[] {
  const kinds = new Map<string, string[]>();
  const problem = (kind: string, text: string) => {
    const list = kinds.get(kind) ?? [];
    list.push(text);
    kinds.set(kind, list);
  };

  // seq: every row, exactly 1..N.
  const n = rows.length;
  const bySeq = new Map<number, AuditLogEntity>();
  for (const row of rows) {
    if (row.seq === null || row.seq === undefined) {
      problem('no seq', `event ${row.id} (${row.action}, ${row.occurredAt.toISOString()}) has no seq`);
      continue;
    }
    const other = bySeq.get(row.seq);
    if (other) problem('duplicate seq', `seq ${row.seq} is held by events ${other.id} and ${row.id}`);
    else bySeq.set(row.seq, row);
    if (!Number.isInteger(row.seq) || row.seq < 1 || row.seq > n) problem('seq out of 1..N', `event ${row.id} has seq ${row.seq}, outside 1..${n}`);
  }
  for (let seq = 1; seq <= n; seq++) if (!bySeq.has(seq)) problem('seq gap', `no event has seq ${seq} (of 1..${n})`);

  // Leaves: 0..N-1, each naming the event of seq idx+1, with its leaf hash.
  if (leaves.length !== n) problem('leaf count', `audit_tree holds ${leaves.length} leaves for ${n} events`);
  const leafHashes: Buffer[] = [];
  for (const [i, leaf] of leaves.entries()) {
    leafHashes.push(Buffer.from(leaf.hash, 'hex'));
    if (leaf.index !== i) {
      problem('leaf index', `leaf #${i} (in index order) has idx ${leaf.index}`);
      continue;
    }
    const row = bySeq.get(i + 1);
    if (!row) {
      problem('leaf without event', `leaf ${i} (event_id ${leaf.eventId}) has no event of seq ${i + 1}`);
      continue;
    }
    if (leaf.eventId !== row.id) problem('leaf event', `leaf ${i} names event ${leaf.eventId}, but seq ${i + 1} is event ${row.id}`);
    let expected: string;
    try {
      expected = leafHash(Buffer.from(canonicalEventJson(row), 'utf8')).toString('hex');
    } catch (error) {
      problem('leaf hash', `event ${row.id} (seq ${i + 1}) cannot be canonicalised: ${(error as Error).message}`);
      continue;
    }
    if (leaf.hash !== expected) problem('leaf hash', `leaf ${i} (event ${row.id}) holds ${leaf.hash}, its event hashes to ${expected}`);
  }

  // Higher nodes: each complete subtree stored once, with the hash of its children.
  const stored = new Map(nodes.map((node) => [`${node.level}:${node.index}`, node.hash]));
  let below = leafHashes;
  let expectedNodes = 0;
  for (let level = 1; below.length >= 2; level++) {
    const here: Buffer[] = [];
    for (let i = 0; 2 * i + 1 < below.length; i++) {
      const hash = nodeHash(below[2 * i]!, below[2 * i + 1]!);
      here.push(hash);
      expectedNodes++;
      const found = stored.get(`${level}:${i}`);
      if (found === undefined) problem('missing node', `audit_tree has no node (${level}, ${i}), though its ${2 ** level} leaves are all stored`);
      else if (found !== hash.toString('hex')) problem('node hash', `node (${level}, ${i}) holds ${found}, its children hash to ${hash.toString('hex')}`);
    }
    below = here;
  }
  if (nodes.length !== expectedNodes) problem('node count', `audit_tree holds ${nodes.length} nodes above the leaves, a tree of ${leafHashes.length} leaves has ${expectedNodes}`);

  // Checkpoints: root of their first tree_size leaves, signed, naming origin, size and root.
  const verifier = createVerifier(options.origin, options.publicKey);
  for (const row of checkpoints) {
    const where = `checkpoint of tree size ${row.treeSize}`;
    if (row.treeSize > leafHashes.length) {
      problem('checkpoint size', `${where}: the tree holds only ${leafHashes.length} leaves`);
      continue;
    }
    const root = rootHash(leafHashes.slice(0, row.treeSize)).toString('hex');
    if (row.rootHash !== root) problem('checkpoint root', `${where}: root_hash ${row.rootHash}, its leaves give ${root}`);
    try {
      const note = parseCheckpoint(openNote(row.note, [verifier]).text);
      if (note.origin !== options.origin) problem('checkpoint note', `${where}: the note names origin ${JSON.stringify(note.origin)}`);
      if (note.treeSize !== BigInt(row.treeSize)) problem('checkpoint note', `${where}: the note says tree size ${note.treeSize}`);
      if (note.rootHash.toString('hex') !== root) problem('checkpoint note', `${where}: the note's root is ${note.rootHash.toString('hex')}, the leaves give ${root}`);
    } catch (error) {
      problem('checkpoint signature', `${where}: the note does not verify: ${(error as Error).message}`);
    }
  }

  // The final checkpoint(): every event, the whole tree, stored as the last checkpoint.
  const final = options.checkpoint;
  if (final) {
    const root = rootHash(leafHashes).toString('base64');
    if (final.treeSize !== n) problem('final checkpoint', `checkpoint() returned tree size ${final.treeSize}, audit_log holds ${n} events`);
    if (final.rootHash !== root) problem('final checkpoint', `checkpoint() returned root ${final.rootHash}, the whole tree's is ${root}`);
    if (checkpoints.at(-1)?.note !== final.note) problem('final checkpoint', `checkpoint()'s note is not the last stored checkpoint's (tree size ${checkpoints.at(-1)?.treeSize ?? 'none'})`);
  }

  return [...kinds.entries()].flatMap(([kind, list]) => [
    ...list.slice(0, EXAMPLES).map((text) => `${kind}: ${text}`),
    ...(list.length > EXAMPLES ? [`${kind}: … and ${list.length - EXAMPLES} more`] : []),
  ]);
}
