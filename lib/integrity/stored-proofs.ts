import type { EntityManager } from 'typeorm';
import { AuditIntegrityError } from '../exceptions/audit-integrity.error.js';
import type { AuditCheckpoint, AuditInclusionProof } from '../interfaces/audit-integrity.interface.js';
import { AuditCheckpointEntity } from '../storage/audit-checkpoint.entity.js';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { findOneQuietly } from '../storage/quiet-find.js';
import { canonicalEventJson } from './canonical-json.js';
import { checkpointOfNote, type Checkpoint } from './checkpoint-note.js';
import { inclusionProofRanges, leafHashOfText, nodeHash, perfectSubtrees, verifyInclusionProof } from './merkle.js';
import { checkpointOfRow } from './stored-checkpoint.js';
import { MissingTreeNodeError, TreeStore } from './tree-store.js';

/*
 * Proofs read from the stored tree, without the application: what the service's prove()
 * and the command line's `prove` share. Nothing here depends on Nest, so the command line
 * starts without loading it.
 */

/**
 * The inclusion proof of a sequenced event in the tree of `checkpoint`, read from
 * `audit_tree`. The event's leaf is the one at its `seq`, and must be the hash of the event
 * as stored now and name it; the proof is checked against the root signed in the
 * checkpoint's note before it is returned. A damaged tree is not worked around: the proof
 * is refused, naming the tree row at fault where the rows around it tell.
 *
 * @throws AuditIntegrityError when the event no longer matches its leaf, or the tree rows
 *   on its path (or the checkpoint) do not lead to the signed root.
 */
export async function inclusionProofOf(manager: EntityManager, row: AuditLogEntity, checkpoint: AuditCheckpoint): Promise<AuditInclusionProof> {
  if (row.seq === null) throw new AuditIntegrityError(`event ${row.id} has no seq yet`);
  if (row.seq > checkpoint.treeSize) throw new AuditIntegrityError(`event ${row.id} (seq ${row.seq}) is past the checkpoint of tree size ${checkpoint.treeSize}`);
  const tree = new TreeStore();
  const index = row.seq - 1;
  const leafRow = await findOneQuietly(manager.getRepository(AuditTreeEntity), { where: { level: 0, index } });
  if (!leafRow) throw new AuditIntegrityError(`audit_tree has no leaf for seq ${row.seq} (level 0, index ${index}): the tree was altered`);
  const leaf = storedHash(leafRow.hash);
  const computed = leafHashOfText(canonicalEventJson(row));
  if (!computed.equals(leaf)) {
    const vouched = await leafRowAltered(manager, tree, index, computed, checkpoint);
    if (vouched) {
      throw new AuditIntegrityError(
        `cannot prove event ${row.id} (seq ${row.seq}): its leaf in audit_tree (level 0, index ${index}) is not the event's hash, though ${vouched}: the tree row was altered`,
      );
    }
    throw new AuditIntegrityError(`event ${row.id} (seq ${row.seq}) does not match its leaf in audit_tree: it was changed after it was sequenced`);
  }
  if (leafRow.eventId && leafRow.eventId !== row.id) {
    // The leaf hash covers the event's id: the tree row's event_id was changed.
    throw new AuditIntegrityError(
      `seq ${row.seq} belongs to event ${leafRow.eventId} in audit_tree (level 0, index ${index}), not to ${row.id}, though ${row.id} hashes to that leaf: the tree row was altered`,
    );
  }
  const signed = signedRoot(checkpoint);
  let path: Buffer[];
  try {
    path = await tree.inclusionPath(manager, index, checkpoint.treeSize);
  } catch (error) {
    if (error instanceof MissingTreeNodeError) throw new AuditIntegrityError(`cannot prove event ${row.id} (seq ${row.seq}): ${error.message}`);
    throw error;
  }
  if (!verifyInclusionProof(index, checkpoint.treeSize, leaf, path, signed)) {
    const damaged = await damagedNode(manager, tree, index, checkpoint.treeSize);
    throw new AuditIntegrityError(
      damaged
        ? `cannot prove event ${row.id} (seq ${row.seq}): ${damaged}`
        : `cannot prove event ${row.id} (seq ${row.seq}): its leaf and the audit_tree rows on its path do not lead to the root signed in checkpoint ${checkpoint.treeSize}: the tree rows were altered`,
    );
  }
  return {
    id: row.id,
    seq: row.seq,
    leafIndex: index,
    treeSize: checkpoint.treeSize,
    leafHash: leaf.toString('base64'),
    path: path.map((hash) => hash.toString('base64')),
    checkpoint: { treeSize: checkpoint.treeSize, rootHash: checkpoint.rootHash, note: checkpoint.note },
  };
}

/**
 * Whether the event's hash `computed`, in place of the stored leaf `index` it differs from,
 * rebuilds the stored tree above it: with its sibling's stored leaf, the stored node over
 * the two (the last leaf of the stored tree has no sibling: RFC 9162 promotes it, and only
 * the signed root is above it), and with the audit path, the root signed in `checkpoint`.
 * Then the event is as it was sequenced and the leaf row was altered: says so in words.
 * A changed event cannot rebuild a node (the node's hash covers both children), and a leaf
 * row altered together with the node above it is not told apart from a changed event.
 * A few more reads (the sibling, the node, the path): O(log n).
 */
async function leafRowAltered(manager: EntityManager, tree: TreeStore, index: number, computed: Buffer, checkpoint: AuditCheckpoint): Promise<string | undefined> {
  const siblingIndex = index % 2 === 0 ? index + 1 : index - 1;
  let signed: Buffer;
  let path: Buffer[];
  let sibling: AuditTreeEntity | null;
  try {
    signed = signedRoot(checkpoint);
    sibling = await findOneQuietly(manager.getRepository(AuditTreeEntity), { where: { level: 0, index: siblingIndex } });
    if (sibling) {
      const [parent] = await tree.hashes(manager, [{ level: 1, index: Math.floor(index / 2) }]);
      const left = index % 2 === 0 ? computed : storedHash(sibling.hash);
      const right = index % 2 === 0 ? storedHash(sibling.hash) : computed;
      if (!nodeHash(left, right).equals(parent!)) return undefined;
    } else if (index % 2 === 1) {
      return undefined; // a leaf at an odd index always has its left sibling stored
    }
    path = await tree.inclusionPath(manager, index, checkpoint.treeSize);
  } catch (error) {
    if (error instanceof AuditIntegrityError || error instanceof MissingTreeNodeError) return undefined;
    throw error;
  }
  if (!verifyInclusionProof(index, checkpoint.treeSize, computed, path, signed)) return undefined;
  const above = sibling ? `the event's hash with its sibling's stored leaf is the stored node above them (level 1, index ${Math.floor(index / 2)}), and` : `the event's hash, the last leaf of the tree,`;
  return `${above} leads to the root signed in checkpoint ${checkpoint.treeSize}`;
}

/** A stored hash's bytes (anything but 64 hex digits reads as empty, which matches nothing). */
function storedHash(text: string): Buffer {
  return Buffer.from(/^[0-9a-f]{64}$/i.test(text) ? text : '', 'hex');
}

/** The root hash a checkpoint's note signs (the note must be of the checkpoint's tree size). */
function signedRoot(checkpoint: AuditCheckpoint): Buffer {
  const note = checkpoint.note;
  let parsed: Checkpoint;
  try {
    parsed = checkpointOfNote(note);
  } catch (error) {
    throw new AuditIntegrityError(`checkpoint ${checkpoint.treeSize} in audit_checkpoint does not hold a checkpoint note: ${(error as Error).message}`);
  }
  if (parsed.treeSize !== BigInt(checkpoint.treeSize)) {
    throw new AuditIntegrityError(`checkpoint ${checkpoint.treeSize} in audit_checkpoint holds the note of tree size ${parsed.treeSize}: the row was altered`);
  }
  return parsed.rootHash;
}

/**
 * The first inner node on the audit path of leaf `index` (lowest level first) that is not
 * the hash of its two stored children, or that lacks one, in words; `undefined` when each
 * agrees with its children.
 */
async function damagedNode(manager: EntityManager, tree: TreeStore, index: number, size: number): Promise<string | undefined> {
  const nodes = inclusionProofRanges(index, size)
    .flatMap((range) => perfectSubtrees(range))
    .filter((node) => node.level > 0)
    .sort((a, b) => a.level - b.level);
  for (const node of nodes) {
    const children = [
      { level: node.level - 1, index: node.index * 2 },
      { level: node.level - 1, index: node.index * 2 + 1 },
    ];
    let hashes: Buffer[];
    try {
      hashes = await tree.hashes(manager, [node, ...children]);
    } catch (error) {
      if (error instanceof MissingTreeNodeError) return error.message;
      throw error;
    }
    if (!nodeHash(hashes[1]!, hashes[2]!).equals(hashes[0]!)) {
      const first = node.index * 2 ** node.level + 1;
      return `audit_tree node at level ${node.level}, index ${node.index} (over events ${first} to ${first + 2 ** node.level - 1}) is not the hash of its two children: the tree row was altered`;
    }
  }
  return undefined;
}

/** The last stored checkpoint. */
export async function latestCheckpoint(manager: EntityManager): Promise<AuditCheckpoint | undefined> {
  const row = await findOneQuietly(manager.getRepository(AuditCheckpointEntity), { where: {}, order: { treeSize: 'DESC' } });
  return row ? checkpointOfRow(row) : undefined;
}
