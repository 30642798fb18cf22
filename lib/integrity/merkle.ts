import { createHash, hash, timingSafeEqual } from 'node:crypto';
import { InvalidMerkleInputError } from '../exceptions/invalid-merkle-input.error.js';

/**
 * The Merkle tree of RFC 9162 (Certificate Transparency version 2.0), section 2.1, with
 * SHA-256: the tree hash of a list of leaves, inclusion proofs (a leaf is in the tree)
 * and consistency proofs (a tree of `m` leaves is a prefix of a tree of `n`).
 *
 * A proof is a list of hashes of subtrees, and every subtree is a range of leaves
 * `[start, end)`. The proof generators come in two layers: {@link inclusionProofRanges}
 * and {@link consistencyProofRanges} say which ranges a proof is made of, without any
 * hashing; {@link inclusionProof} and {@link consistencyProof} hash those ranges over
 * leaf hashes held in memory. A store that keeps the hash of every perfect subtree
 * (a node at `level` and `index`, covering `2^level` leaves from `index * 2^level`) answers
 * the same proofs with O(log n) reads: {@link perfectSubtrees} names the nodes that make
 * up a range and {@link combineSubtrees} folds their hashes into the range's hash.
 *
 * Sizes and indexes are plain numbers (safe integers): arithmetic, never 32-bit bit
 * operators, so trees past 2^31 leaves work.
 */

/** Length of every hash in the tree (SHA-256). */
export const HASH_LENGTH = 32;

/** A range of leaves `[start, end)`, `start < end`: the leaves a subtree hash covers. */
export interface LeafRange {
  readonly start: number;
  readonly end: number;
}

/**
 * A perfect subtree: the node at `level` (0 for a leaf) and `index` within that level,
 * covering the `2^level` leaves from `index * 2^level`.
 */
export interface TreeNode {
  readonly level: number;
  readonly index: number;
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** `SHA-256(0x00 || data)`: the hash of one leaf. */
export function leafHash(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

/** {@link leafHash} of `text` in UTF-8 (one buffer and one native call: the cheaper form for an event's canonical JSON). */
export function leafHashOfText(text: string): Buffer {
  return hash('sha256', Buffer.from(`\u0000${text}`, 'utf8'), 'buffer');
}

/** `SHA-256(0x01 || left || right)`: the hash of an inner node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** The Merkle tree hash of the empty list: `SHA-256` of no bytes. */
export function emptyRootHash(): Buffer {
  return createHash('sha256').digest();
}

/**
 * The Merkle tree hash (RFC 9162 MTH) of a list of leaf hashes, of any length.
 *
 * @throws InvalidMerkleInputError when a leaf hash is not 32 bytes.
 */
export function rootHash(leafHashes: readonly Uint8Array[]): Buffer {
  checkHashes('leafHashes', leafHashes);
  if (leafHashes.length === 0) return emptyRootHash();
  return hashLeaves(leafHashes, 0, leafHashes.length);
}

/**
 * The audit path of the leaf at `index` in the tree of `leafHashes` (RFC 9162 PATH):
 * the sibling hashes from the leaf up to the root.
 *
 * @throws InvalidMerkleInputError when `index` is not below the number of leaves.
 */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number): Buffer[] {
  checkHashes('leafHashes', leafHashes);
  return inclusionProofRanges(index, leafHashes.length).map((range) => hashLeaves(leafHashes, range.start, range.end));
}

/**
 * The consistency proof from the tree of the first `m` of `leafHashes` to the tree of all
 * of them (RFC 9162 PROOF). Empty when `m` is 0 or all the leaves.
 *
 * @throws InvalidMerkleInputError when `m` is larger than the number of leaves.
 */
export function consistencyProof(leafHashes: readonly Uint8Array[], m: number): Buffer[] {
  checkHashes('leafHashes', leafHashes);
  return consistencyProofRanges(m, leafHashes.length).map((range) => hashLeaves(leafHashes, range.start, range.end));
}

/**
 * The leaf ranges whose tree hashes, in order, form the audit path of the leaf at `index`
 * in a tree of `size` leaves (RFC 9162 section 2.1.3.1).
 *
 * @throws InvalidMerkleInputError when `index` is not below `size`.
 */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  checkSize('size', size);
  checkSize('index', index);
  if (index >= size) throw new InvalidMerkleInputError('index', `${index} is not below the tree size ${size}`);
  const ranges: LeafRange[] = [];
  // Walk down from the root; each step records the sibling of the side that holds the leaf.
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = largestPowerOfTwoBelow(end - start);
    if (index < start + k) {
      ranges.push({ start: start + k, end });
      end = start + k;
    } else {
      ranges.push({ start, end: start + k });
      start += k;
    }
  }
  // PATH lists the hashes from the leaf upwards.
  return ranges.reverse();
}

/**
 * The leaf ranges whose tree hashes, in order, form the consistency proof from a tree of
 * `m` leaves to a tree of `n` (RFC 9162 section 2.1.4.1, PROOF and SUBPROOF). Empty when
 * `m` is 0 or `n`.
 *
 * @throws InvalidMerkleInputError when `m` is larger than `n`.
 */
export function consistencyProofRanges(m: number, n: number): LeafRange[] {
  checkSize('n', n);
  checkSize('m', m);
  if (m > n) throw new InvalidMerkleInputError('m', `${m} is larger than the newer tree size ${n}`);
  if (m === 0 || m === n) return [];
  const ranges: LeafRange[] = [];
  // SUBPROOF(m, D[start:end], known): `known` while the subtree's left edge is the old root's.
  let start = 0;
  let end = n;
  let known = true;
  while (m !== end - start) {
    const k = largestPowerOfTwoBelow(end - start);
    if (m <= k) {
      ranges.push({ start: start + k, end });
      end = start + k;
    } else {
      ranges.push({ start, end: start + k });
      m -= k;
      start += k;
      known = false;
    }
  }
  if (!known) ranges.push({ start, end });
  return ranges.reverse();
}

/**
 * The perfect subtrees that make up a range of a proof, largest first: the nodes a store
 * of subtree hashes reads to answer the range's hash with {@link combineSubtrees}. A
 * range of a proof is always either a perfect subtree or the right edge of one, so this
 * is at most one node per level.
 *
 * @throws InvalidMerkleInputError when the range is empty or does not start on a
 *   boundary of its own size (no subtree of an RFC 9162 tree covers it).
 */
export function perfectSubtrees(range: LeafRange): TreeNode[] {
  const { start, end } = range;
  checkSize('range.start', start);
  checkSize('range.end', end);
  if (end <= start) throw new InvalidMerkleInputError('range', `[${start}, ${end}) is empty`);
  const width = end - start;
  const span = isPowerOfTwo(width) ? width : 2 * largestPowerOfTwoBelow(width);
  if (start % span !== 0) throw new InvalidMerkleInputError('range', `[${start}, ${end}) is not a subtree of any tree`);
  const nodes: TreeNode[] = [];
  let from = start;
  while (from < end) {
    const rest = end - from;
    const size = isPowerOfTwo(rest) ? rest : largestPowerOfTwoBelow(rest);
    const level = Math.log2(size);
    nodes.push({ level, index: from / size });
    from += size;
  }
  return nodes;
}

/**
 * The tree hash of a range from the hashes of its {@link perfectSubtrees}, in the same
 * order (largest first): the right edge of a tree folds from the right.
 *
 * @throws InvalidMerkleInputError when no hash is given.
 */
export function combineSubtrees(hashes: readonly Uint8Array[]): Buffer {
  const last = hashes[hashes.length - 1];
  if (last === undefined) throw new InvalidMerkleInputError('hashes', 'is empty');
  let hash: Buffer = Buffer.from(last);
  for (let i = hashes.length - 2; i >= 0; i--) hash = nodeHash(hashes[i]!, hash);
  return hash;
}

/**
 * Whether `path` proves that `leafHash` is the leaf at `leafIndex` of the tree of
 * `treeSize` leaves whose hash is `root` (RFC 9162 section 2.1.3.2). A proof that does
 * not match, or a hash of the wrong length, gives `false`.
 *
 * @throws InvalidMerkleInputError when `leafIndex` is not below `treeSize`.
 */
export function verifyInclusionProof(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  path: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  checkSize('treeSize', treeSize);
  checkSize('leafIndex', leafIndex);
  if (leafIndex >= treeSize) throw new InvalidMerkleInputError('leafIndex', `${leafIndex} is not below the tree size ${treeSize}`);
  if (!isHash(leafHash) || !isHash(root) || !path.every(isHash)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equal(r, root);
}

/**
 * Whether `proof` shows that the tree of `m` leaves with hash `rootM` is a prefix of the
 * tree of `n` leaves with hash `rootN` (RFC 9162 section 2.1.4.2). For `m` equal to `n`
 * the proof must be empty and the roots equal; for `m` 0 the proof must be empty and
 * `rootM` the empty tree's hash. A proof that does not match, or a hash of the wrong
 * length, gives `false`.
 *
 * @throws InvalidMerkleInputError when `m` is larger than `n`.
 */
export function verifyConsistencyProof(m: number, n: number, rootM: Uint8Array, rootN: Uint8Array, proof: readonly Uint8Array[]): boolean {
  checkSize('n', n);
  checkSize('m', m);
  if (m > n) throw new InvalidMerkleInputError('m', `${m} is larger than the newer tree size ${n}`);
  if (!isHash(rootM) || !isHash(rootN) || !proof.every(isHash)) return false;
  if (m === 0) return proof.length === 0 && equal(rootM, emptyRootHash());
  if (m === n) return proof.length === 0 && equal(rootM, rootN);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(m) ? [rootM, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = fr;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && equal(fr, rootM) && equal(sr, rootN);
}

/** The largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree. */
export function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH of `leafHashes[start..end)`, `start < end`. */
function hashLeaves(leafHashes: readonly Uint8Array[], start: number, end: number): Buffer {
  if (end - start === 1) return Buffer.from(leafHashes[start]!);
  const k = largestPowerOfTwoBelow(end - start);
  return nodeHash(hashLeaves(leafHashes, start, start + k), hashLeaves(leafHashes, start + k, end));
}

function isPowerOfTwo(n: number): boolean {
  return n === 1 || (n > 1 && largestPowerOfTwoBelow(n) * 2 === n);
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function isHash(value: Uint8Array): boolean {
  return value instanceof Uint8Array && value.length === HASH_LENGTH;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function checkSize(parameter: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidMerkleInputError(parameter, `must be a non-negative safe integer, got ${String(value)}`);
  }
}

function checkHashes(parameter: string, hashes: readonly Uint8Array[]): void {
  hashes.forEach((hash, i) => {
    if (!isHash(hash)) throw new InvalidMerkleInputError(`${parameter}[${i}]`, `must be a ${HASH_LENGTH}-byte hash`);
  });
}

/** A stored node of the tree: a perfect subtree and its hash. */
export interface HashedNode extends TreeNode {
  readonly hash: Buffer;
}

/**
 * Appends leaves to a tree of `size` leaves known by its right edge (`frontier`: the
 * hashed {@link perfectSubtrees} of `[0, size)`, largest first; empty for an empty tree).
 * Returns every node the new leaves complete (each leaf, then each inner node that
 * becomes perfect, bottom-up), the new right edge, and the new root hash.
 *
 * @throws InvalidMerkleInputError when the frontier does not fit `size` or a hash is not 32 bytes.
 */
export function appendLeaves(
  size: number,
  frontier: readonly HashedNode[],
  leaves: readonly Uint8Array[],
): { nodes: HashedNode[]; frontier: HashedNode[]; root: Buffer } {
  checkSize('size', size);
  checkHashes('leaves', leaves);
  const expected = size === 0 ? [] : perfectSubtrees({ start: 0, end: size });
  if (expected.length !== frontier.length || expected.some((node, i) => node.level !== frontier[i]!.level || node.index !== frontier[i]!.index)) {
    throw new InvalidMerkleInputError('frontier', `does not hold the perfect subtrees of a tree of ${size} leaves`);
  }
  checkHashes('frontier', frontier.map((node) => node.hash));
  const stack: HashedNode[] = [...frontier];
  const nodes: HashedNode[] = [];
  leaves.forEach((leaf, i) => {
    let node: HashedNode = { level: 0, index: size + i, hash: Buffer.from(leaf) };
    nodes.push(node);
    while (stack.length > 0 && stack[stack.length - 1]!.level === node.level) {
      const left = stack.pop()!;
      node = { level: node.level + 1, index: left.index / 2, hash: nodeHash(left.hash, node.hash) };
      nodes.push(node);
    }
    stack.push(node);
  });
  const root = stack.length === 0 ? emptyRootHash() : combineSubtrees(stack.map((node) => node.hash));
  return { nodes, frontier: stack, root };
}
