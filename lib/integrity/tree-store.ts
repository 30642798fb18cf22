import type { EntityManager } from 'typeorm';
import { AuditTreeEntity } from '../storage/audit-tree.entity.js';
import { findQuietly } from '../storage/quiet-find.js';
import {
  combineSubtrees,
  consistencyProofRanges,
  emptyRootHash,
  inclusionProofRanges,
  perfectSubtrees,
  type HashedNode,
  type LeafRange,
  type TreeNode,
} from './merkle.js';

/** Thrown when `audit_tree` lacks a node a proof or the integrator needs. */
export class MissingTreeNodeError extends Error {
  constructor(node: TreeNode) {
    super(`audit_tree has no node at level ${node.level}, index ${node.index}: the tree was altered, or events were sequenced without it`);
    this.name = 'MissingTreeNodeError';
  }
}

const key = (node: TreeNode): string => `${node.level}:${node.index}`;
/** Nodes read per statement (an OR of (level, idx) pairs). */
const NODES_PER_READ = 200;

/**
 * Reads the Merkle tree kept in `audit_tree`: any range a proof needs is answered from its
 * perfect subtrees, so a proof or a root costs O(log n) rows.
 */
export class TreeStore {
  /** The number of leaves stored. */
  async size(manager: EntityManager): Promise<number> {
    const row = await manager
      .createQueryBuilder(AuditTreeEntity, 'node')
      .select('MAX(node.index)', 'last')
      .where('node.level = 0')
      .getRawOne<{ last: string | number | null }>();
    return row?.last === null || row?.last === undefined ? 0 : Number(row.last) + 1;
  }

  /** The stored hashes of `nodes`, in the same order. */
  async hashes(manager: EntityManager, nodes: readonly TreeNode[]): Promise<Buffer[]> {
    const found = new Map<string, Buffer>();
    const wanted = [...new Map(nodes.map((node) => [key(node), node])).values()];
    for (let i = 0; i < wanted.length; i += NODES_PER_READ) {
      const chunk = wanted.slice(i, i + NODES_PER_READ);
      const rows = await findQuietly(manager.getRepository(AuditTreeEntity), {
        select: { level: true, index: true, hash: true },
        where: chunk.map((node) => ({ level: node.level, index: node.index })),
      });
      for (const row of rows) found.set(key({ level: Number(row.level), index: Number(row.index) }), Buffer.from(row.hash, 'hex'));
    }
    return nodes.map((node) => {
      const hash = found.get(key(node));
      if (!hash) throw new MissingTreeNodeError(node);
      return hash;
    });
  }

  /** The right edge of the tree of `size` leaves: its perfect subtrees, largest first, with their hashes. */
  async frontier(manager: EntityManager, size: number): Promise<HashedNode[]> {
    if (size === 0) return [];
    const nodes = perfectSubtrees({ start: 0, end: size });
    const hashes = await this.hashes(manager, nodes);
    return nodes.map((node, i) => ({ ...node, hash: hashes[i]! }));
  }

  /** The root hash of the tree of its first `size` leaves. */
  async root(manager: EntityManager, size: number): Promise<Buffer> {
    if (size === 0) return emptyRootHash();
    return combineSubtrees((await this.frontier(manager, size)).map((node) => node.hash));
  }

  /** The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 inclusion proof). */
  inclusionPath(manager: EntityManager, index: number, size: number): Promise<Buffer[]> {
    return this.rangeHashes(manager, inclusionProofRanges(index, size));
  }

  /** The RFC 9162 consistency proof from the tree of `m` leaves to the tree of `n`. */
  consistencyPath(manager: EntityManager, m: number, n: number): Promise<Buffer[]> {
    return this.rangeHashes(manager, consistencyProofRanges(m, n));
  }

  /** The hash of each range, read in one go. */
  private async rangeHashes(manager: EntityManager, ranges: readonly LeafRange[]): Promise<Buffer[]> {
    const parts = ranges.map((range) => perfectSubtrees(range));
    const hashes = await this.hashes(manager, parts.flat());
    let at = 0;
    return parts.map((nodes) => {
      const slice = hashes.slice(at, at + nodes.length);
      at += nodes.length;
      return combineSubtrees(slice);
    });
  }
}
