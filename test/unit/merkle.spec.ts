import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InvalidMerkleInputError } from '../../lib/exceptions/invalid-merkle-input.error.js';
import { canonicalEventJson, canonicalJson, wholeEventJson, type CanonicalEventInput } from '../../lib/integrity/canonical-json.js';
import {
  combineSubtrees,
  consistencyProof,
  consistencyProofRanges,
  emptyRootHash,
  inclusionProof,
  inclusionProofRanges,
  leafHash,
  leafHashOfText,
  nodeHash,
  perfectSubtrees,
  rootHash,
  verifyConsistencyProof,
  verifyInclusionProof,
  appendLeaves,
  type HashedNode,
  type LeafRange,
} from '../../lib/integrity/merkle.js';
import { CONSISTENCY_PROOFS, INCLUSION_PROOFS, LEAF_INPUTS, NODE_HASHES, ROOT_HASHES } from './fixtures/rfc9162-vectors.js';

const hex = (hash: Uint8Array): string => Buffer.from(hash).toString('hex');
const unhex = (text: string): Buffer => Buffer.from(text, 'hex');
const leaves = LEAF_INPUTS.map((input) => leafHash(unhex(input)));

/** `count` distinct leaf hashes. */
function generatedLeaves(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => leafHash(Buffer.from(`event ${i}`)));
}

/** A copy of `hashes` with one bit of item `at` flipped. */
function flipped(hashes: readonly Buffer[], at: number): Buffer[] {
  return hashes.map((hash, i) => {
    if (i !== at) return hash;
    const copy = Buffer.from(hash);
    copy[0] = copy[0]! ^ 0x08;
    return copy;
  });
}

/**
 * A store of perfect subtree hashes, `(level, index) -> hash`, built from `leafHashes`,
 * counting reads: what a table of tree nodes would answer.
 */
function nodeStore(leafHashes: readonly Buffer[]): { read(level: number, index: number): Buffer; reads: number } {
  const levels: Buffer[][] = [[...leafHashes]];
  while (levels[levels.length - 1]!.length > 1) {
    const below = levels[levels.length - 1]!;
    const above: Buffer[] = [];
    for (let i = 0; i + 1 < below.length; i += 2) above.push(nodeHash(below[i]!, below[i + 1]!));
    levels.push(above);
  }
  const store = {
    reads: 0,
    read(level: number, index: number): Buffer {
      store.reads++;
      const hash = levels[level]?.[index];
      if (!hash) throw new Error(`no node at level ${level}, index ${index}`);
      return hash;
    },
  };
  return store;
}

/** A proof answered from the node store, as a database-backed tree would. */
function fromStore(store: ReturnType<typeof nodeStore>, ranges: readonly LeafRange[]): Buffer[] {
  return ranges.map((range) => combineSubtrees(perfectSubtrees(range).map((node) => store.read(node.level, node.index))));
}

describe('Merkle tree (RFC 9162) against the transparency-dev test vectors', () => {
  it('hashes each leaf input to the published leaf hash', () => {
    expect(leaves.map(hex)).toEqual(NODE_HASHES[0]);
  });

  it('gives the published root for every tree size 0 to 8', () => {
    ROOT_HASHES.forEach((root, size) => {
      expect(hex(rootHash(leaves.slice(0, size))), `size ${size}`).toBe(root);
    });
    expect(hex(emptyRootHash())).toBe(ROOT_HASHES[0]);
  });

  it('gives the published hash of every perfect subtree', () => {
    NODE_HASHES.forEach((level, height) => {
      level.forEach((hash, index) => {
        const width = 2 ** height;
        expect(hex(rootHash(leaves.slice(index * width, (index + 1) * width))), `level ${height}, index ${index}`).toBe(hash);
      });
    });
  });

  it.each(INCLUSION_PROOFS)('makes and verifies the published inclusion proof of leaf $index in a tree of $size', ({ index, size, proof }) => {
    const made = inclusionProof(leaves.slice(0, size), index);
    expect(made.map(hex)).toEqual(proof);
    expect(verifyInclusionProof(index, size, leaves[index]!, proof.map(unhex), unhex(ROOT_HASHES[size]!))).toBe(true);
  });

  it.each(CONSISTENCY_PROOFS)('makes and verifies the published consistency proof from $m to $n', ({ m, n, proof }) => {
    const made = consistencyProof(leaves.slice(0, n), m);
    expect(made.map(hex)).toEqual(proof);
    expect(verifyConsistencyProof(m, n, unhex(ROOT_HASHES[m]!), unhex(ROOT_HASHES[n]!), proof.map(unhex))).toBe(true);
  });

  it.each(INCLUSION_PROOFS.filter((vector) => vector.proof.length > 0))(
    'refuses the inclusion proof of leaf $index in a tree of $size once tampered with',
    ({ index, size, proof }) => {
      const path = proof.map(unhex);
      const root = unhex(ROOT_HASHES[size]!);
      const leaf = leaves[index]!;
      for (let i = 0; i < path.length; i++) expect(verifyInclusionProof(index, size, leaf, flipped(path, i), root)).toBe(false);
      expect(verifyInclusionProof(index, size, leafHash(Buffer.from('WrongLeaf')), path, root)).toBe(false);
      expect(verifyInclusionProof(index, size, leaf, path, emptyRootHash())).toBe(false);
      expect(verifyInclusionProof(index, size, leaf, path.slice(0, -1), root)).toBe(false);
      expect(verifyInclusionProof(index, size, leaf, [...path, root], root)).toBe(false);
      expect(verifyInclusionProof(index, size, leaf, [root, ...path], root)).toBe(false);
      expect(verifyInclusionProof(index, size, leaf, [...path, Buffer.alloc(0)], root)).toBe(false);
      expect(verifyInclusionProof(index, size * 2, leaf, path, root)).toBe(false);
      if (index + 1 < size) expect(verifyInclusionProof(index + 1, size, leaf, path, root)).toBe(false);
      if (index > 0) expect(verifyInclusionProof(index - 1, size, leaf, path, root)).toBe(false);
    },
  );

  it.each(CONSISTENCY_PROOFS.filter((vector) => vector.proof.length > 0))(
    'refuses the consistency proof from $m to $n once tampered with',
    ({ m, n, proof }) => {
      const path = proof.map(unhex);
      const rootM = unhex(ROOT_HASHES[m]!);
      const rootN = unhex(ROOT_HASHES[n]!);
      for (let i = 0; i < path.length; i++) expect(verifyConsistencyProof(m, n, rootM, rootN, flipped(path, i))).toBe(false);
      expect(verifyConsistencyProof(m, n, rootN, rootM, path)).toBe(false);
      expect(verifyConsistencyProof(m, n, rootM, rootN, [])).toBe(false);
      expect(verifyConsistencyProof(m, n, rootM, rootN, path.slice(0, -1))).toBe(false);
      expect(verifyConsistencyProof(m, n, rootM, rootN, [...path, rootM])).toBe(false);
      expect(verifyConsistencyProof(m, n, rootM, rootN, [path[0]!, ...path])).toBe(false);
      expect(verifyConsistencyProof(m - 1 || m + 1, n, rootM, rootN, path)).toBe(false);
      expect(verifyConsistencyProof(m, n * 2, rootM, rootN, path)).toBe(false);
    },
  );
});

describe('Merkle tree proofs for every tree of 1 to 64 leaves', () => {
  const all = generatedLeaves(64);
  /** Root of the tree of the first `size` leaves, by size. */
  const roots = Array.from({ length: 65 }, (_, size) => rootHash(all.slice(0, size)));

  it('verifies every inclusion proof and refuses it with a flipped bit, another index or another size', () => {
    const refused: string[] = [];
    const accepted: string[] = [];
    const reject = (ok: boolean, what: string): void => void (ok && accepted.push(what));
    for (let size = 1; size <= 64; size++) {
      const tree = all.slice(0, size);
      const root = roots[size]!;
      for (let index = 0; index < size; index++) {
        const leaf = tree[index]!;
        const path = inclusionProof(tree, index);
        const where = `leaf ${index} of ${size}`;
        if (!verifyInclusionProof(index, size, leaf, path, root)) refused.push(where);
        for (let i = 0; i < path.length; i++) reject(verifyInclusionProof(index, size, leaf, flipped(path, i), root), `${where}, path[${i}] flipped`);
        reject(verifyInclusionProof(index, size, flipped([leaf], 0)[0]!, path, root), `${where}, leaf flipped`);
        for (let other = 0; other < size; other++) {
          if (other !== index) reject(verifyInclusionProof(other, size, leaf, path, root), `${where} as leaf ${other}`);
        }
        // The size is bound together with its root (a signed checkpoint carries both).
        reject(verifyInclusionProof(index, size * 2, leaf, path, root), `${where} as of ${size * 2}, same root`);
        for (let otherSize = index + 1; otherSize <= 64; otherSize++) {
          if (otherSize !== size) reject(verifyInclusionProof(index, otherSize, leaf, path, roots[otherSize]!), `${where} as of ${otherSize}`);
        }
      }
    }
    expect(refused).toEqual([]);
    expect(accepted).toEqual([]);
  });

  it('verifies every consistency proof and refuses it with a flipped bit, another size or another root', () => {
    const refused: string[] = [];
    const accepted: string[] = [];
    const reject = (ok: boolean, what: string): void => void (ok && accepted.push(what));
    for (let n = 1; n <= 64; n++) {
      const tree = all.slice(0, n);
      const rootN = roots[n]!;
      for (let m = 0; m <= n; m++) {
        const rootM = roots[m]!;
        const proof = consistencyProof(tree, m);
        const where = `${m} to ${n}`;
        if (!verifyConsistencyProof(m, n, rootM, rootN, proof)) refused.push(where);
        for (let i = 0; i < proof.length; i++) reject(verifyConsistencyProof(m, n, rootM, rootN, flipped(proof, i)), `${where}, proof[${i}] flipped`);
        if (m === 0 || m === n) continue;
        reject(verifyConsistencyProof(m, n, flipped([rootM], 0)[0]!, rootN, proof), `${where}, old root flipped`);
        reject(verifyConsistencyProof(m, n, rootM, flipped([rootN], 0)[0]!, proof), `${where}, new root flipped`);
        for (let otherM = 1; otherM < n; otherM++) {
          if (otherM !== m) reject(verifyConsistencyProof(otherM, n, rootM, rootN, proof), `${where} as from ${otherM}`);
        }
        reject(verifyConsistencyProof(m, n * 2, rootM, rootN, proof), `${where} as to ${n * 2}, same root`);
        for (let otherN = m + 1; otherN <= 64; otherN++) {
          if (otherN !== n) reject(verifyConsistencyProof(m, otherN, rootM, roots[otherN]!, proof), `${where} as to ${otherN}`);
        }
      }
    }
    expect(refused).toEqual([]);
    expect(accepted).toEqual([]);
  });

  it('refuses a tree that is not an extension: one leaf of the older tree changed', () => {
    const tree = all.slice(0, 20);
    const forged = flipped(tree, 3);
    for (let m = 4; m < 20; m++) {
      expect(verifyConsistencyProof(m, 20, rootHash(tree.slice(0, m)), rootHash(forged), consistencyProof(forged, m)), `from ${m}`).toBe(false);
    }
  });

  it('answers the same proofs from stored perfect subtrees, in O(log n) reads', () => {
    const wrong: string[] = [];
    const joined = (hashes: readonly Buffer[]): string => hashes.map(hex).join(',');
    for (let size = 1; size <= 64; size++) {
      const tree = all.slice(0, size);
      const store = nodeStore(tree);
      const depth = Math.ceil(Math.log2(size));
      for (let index = 0; index < size; index++) {
        store.reads = 0;
        if (joined(fromStore(store, inclusionProofRanges(index, size))) !== joined(inclusionProof(tree, index))) wrong.push(`leaf ${index} of ${size}`);
        if (store.reads > 2 * depth) wrong.push(`leaf ${index} of ${size}: ${store.reads} reads`);
      }
      for (let m = 0; m <= size; m++) {
        store.reads = 0;
        if (joined(fromStore(store, consistencyProofRanges(m, size))) !== joined(consistencyProof(tree, m))) wrong.push(`${m} to ${size}`);
        if (store.reads > 2 * depth) wrong.push(`${m} to ${size}: ${store.reads} reads`);
      }
      const root = combineSubtrees(perfectSubtrees({ start: 0, end: size }).map((node) => store.read(node.level, node.index)));
      if (!root.equals(roots[size]!)) wrong.push(`root of ${size}`);
    }
    expect(wrong).toEqual([]);
  });

  it('names the perfect subtrees of a range, largest first', () => {
    expect(perfectSubtrees({ start: 0, end: 7 })).toEqual([
      { level: 2, index: 0 },
      { level: 1, index: 2 },
      { level: 0, index: 6 },
    ]);
    expect(perfectSubtrees({ start: 8, end: 13 })).toEqual([
      { level: 2, index: 2 },
      { level: 0, index: 12 },
    ]);
    expect(perfectSubtrees({ start: 2 ** 40, end: 2 ** 41 })).toEqual([{ level: 40, index: 1 }]);
  });

  it('works out proof ranges for trees past 2^32 leaves', () => {
    const size = 2 ** 33 + 5;
    const ranges = inclusionProofRanges(2 ** 32 + 1, size);
    expect(ranges[0]).toEqual({ start: 2 ** 32, end: 2 ** 32 + 1 });
    expect(ranges[ranges.length - 1]).toEqual({ start: 2 ** 33, end: size });
    expect(ranges).toHaveLength(34);
    expect(consistencyProofRanges(2 ** 32, size)).toEqual([
      { start: 2 ** 32, end: 2 ** 33 },
      { start: 2 ** 33, end: size },
    ]);
  });
});

describe('Merkle tree input errors', () => {
  const tree = generatedLeaves(4);
  const root = rootHash(tree);

  it('refuses a leaf index at or past the tree size', () => {
    expect(() => inclusionProof(tree, 4)).toThrow(new InvalidMerkleInputError('index', '4 is not below the tree size 4'));
    expect(() => inclusionProof([], 0)).toThrow(/index 0 is not below the tree size 0/);
    expect(() => verifyInclusionProof(4, 4, tree[0]!, [], root)).toThrow(/leafIndex 4 is not below the tree size 4/);
  });

  it('refuses an older tree larger than the newer one', () => {
    expect(() => consistencyProof(tree, 5)).toThrow(/m 5 is larger than the newer tree size 4/);
    expect(() => verifyConsistencyProof(5, 4, root, root, [])).toThrow(/m 5 is larger than the newer tree size 4/);
  });

  it('refuses sizes and indexes that are not non-negative safe integers', () => {
    expect(() => inclusionProofRanges(-1, 4)).toThrow(/index must be a non-negative safe integer, got -1/);
    expect(() => inclusionProofRanges(1.5, 4)).toThrow(/index must be a non-negative safe integer, got 1.5/);
    expect(() => consistencyProofRanges(1, Number.NaN)).toThrow(/n must be a non-negative safe integer, got NaN/);
    expect(() => verifyInclusionProof(0, 2 ** 60, tree[0]!, [], root)).toThrow(/treeSize must be a non-negative safe integer/);
  });

  it('refuses leaf hashes that are not 32 bytes', () => {
    expect(() => rootHash([tree[0]!, Buffer.alloc(31)])).toThrow(/leafHashes\[1\] must be a 32-byte hash/);
  });

  it('refuses ranges no subtree covers', () => {
    expect(() => perfectSubtrees({ start: 3, end: 3 })).toThrow(/\[3, 3\) is empty/);
    expect(() => perfectSubtrees({ start: 2, end: 5 })).toThrow(/\[2, 5\) is not a subtree of any tree/);
  });

  it('answers false, not an error, for hashes of the wrong length in a proof', () => {
    expect(verifyInclusionProof(0, 4, tree[0]!, [Buffer.alloc(16)], root)).toBe(false);
    expect(verifyInclusionProof(0, 1, Buffer.alloc(0), [], Buffer.alloc(0))).toBe(false);
    expect(verifyConsistencyProof(2, 4, Buffer.from('short'), root, consistencyProof(tree, 2))).toBe(false);
  });

  it('treats equal sizes and the empty tree as RFC 9162 does', () => {
    expect(verifyConsistencyProof(4, 4, root, root, [])).toBe(true);
    expect(verifyConsistencyProof(4, 4, root, emptyRootHash(), [])).toBe(false);
    expect(verifyConsistencyProof(4, 4, root, root, [root])).toBe(false);
    expect(verifyConsistencyProof(0, 4, emptyRootHash(), root, [])).toBe(true);
    expect(verifyConsistencyProof(0, 4, root, root, [])).toBe(false);
  });
});

describe('Canonical JSON of an audit event (RFC 8785)', () => {
  const event: CanonicalEventInput = {
    id: '0190a0b4-7a1e-7cc0-8e6f-3c2a1b0d9e8f',
    occurredAt: new Date('2026-01-02T03:04:05.678Z'),
    action: 'order.updated',
    outcome: 'success',
    kind: 'intent',
    actorType: 'user',
    actorId: '42',
    actorDisplay: null,
    source: 'http',
    ip: '127.0.0.1',
    method: 'PATCH',
    route: '/orders/:id',
    path: '/orders/7',
    targetType: 'Order',
    targetId: '7',
    changes: [{ entity: 'Order', id: '7', operation: 'update', fields: { total: { from: 10, to: 12.5 } } }],
    context: { z: 1, a: { y: true, b: null } },
    reason: null,
  };

  it('writes every column but seq, sorted, dates in UTC with milliseconds, absent columns as null', () => {
    expect(canonicalEventJson({ ...event, seq: '17' } as CanonicalEventInput)).toBe(
      '{"action":"order.updated","actorDisplay":null,"actorId":"42","actorType":"user",' +
        '"changes":[{"entity":"Order","fields":{"total":{"from":10,"to":12.5}},"id":"7","operation":"update"}],' +
        '"context":{"a":{"b":null,"y":true},"z":1},"error":null,"id":"0190a0b4-7a1e-7cc0-8e6f-3c2a1b0d9e8f","ip":"127.0.0.1",' +
        '"kind":"intent","method":"PATCH","occurredAt":"2026-01-02T03:04:05.678Z","outcome":"success","path":"/orders/7",' +
        '"reason":null,"requestId":null,"route":"/orders/:id","source":"http","targetId":"7","targetType":"Order","userAgent":null}',
    );
  });

  it('gives the same bytes for the same event however it was read', () => {
    const asRead = {
      ...event,
      occurredAt: '2026-01-02T03:04:05.678Z',
      actorDisplay: undefined,
      context: JSON.parse('{"a":{"b":null,"y":true},"z":1}') as Record<string, unknown>,
      userAgent: null,
      requestId: null,
      error: null,
    };
    expect(canonicalEventJson(asRead)).toBe(canonicalEventJson(event));
    expect(canonicalEventJson({ ...event, occurredAt: new Date('2026-01-02T04:04:05.678+01:00') })).toBe(canonicalEventJson(event));
    expect(canonicalEventJson({ ...event, actorId: '43' })).not.toBe(canonicalEventJson(event));
  });

  it('refuses an event whose date is not a date', () => {
    expect(() => canonicalEventJson({ ...event, occurredAt: 'yesterday' })).toThrow(/occurredAt "yesterday" is not a valid date/);
  });

  it('sorts members by UTF-16 code units and writes strings and numbers as RFC 8785 section 3.2 shows', () => {
    // RFC 8785 section 3.2.3 (sorting of properties).
    expect(
      canonicalJson({
        '\u20ac': 'Euro Sign',
        '\r': 'Carriage Return',
        '\ufb33': 'Hebrew Letter Dalet With Dagesh',
        '1': 'One',
        '\ud83d\ude00': 'Emoji: Grinning Face',
        '\u0080': 'Control',
        '\u00f6': 'Latin Small Letter O With Diaeresis',
      }),
    ).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    // RFC 8785 section 3.2.2 (the example of transformations).
    expect(
      canonicalJson(
        JSON.parse(
          '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], ' +
            '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
        ),
      ),
    ).toBe('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
  });

  it('refuses values JSON cannot carry, naming where they are', () => {
    expect(() => canonicalJson({ a: [1, Number.POSITIVE_INFINITY] })).toThrow(/\$\.a\[1\]: Infinity is not a JSON number/);
    expect(() => canonicalJson({ a: 1n })).toThrow(/\$\.a: a bigint is not a JSON value/);
    expect(() => canonicalJson({ s: 'x\ud800' })).toThrow(/\$\.s: the string holds a lone UTF-16 surrogate/);
  });

  it('hashes to a leaf as SHA-256(0x00 || utf8)', () => {
    const json = canonicalEventJson(event);
    expect(leafHash(Buffer.from(json, 'utf8'))).toEqual(createHash('sha256').update(Buffer.from([0])).update(json, 'utf8').digest());
    expect(leafHashOfText(json)).toEqual(leafHash(Buffer.from(json, 'utf8')));
    expect(leafHashOfText('\u20ac\ud83d\ude00 \u0000 x')).toEqual(leafHash(Buffer.from('\u20ac\ud83d\ude00 \u0000 x', 'utf8')));
  });

  // The event's canonical JSON is written member by member (the package canonicalising each
  // JSON column): it must be the package's canonicalisation of the whole object, byte for byte.
  it('member by member, it is exactly the canonicalisation of the whole event object', () => {
    const strings = ['', 'plain', 'quote " backslash \\ slash /', 'line\nbreak\ttab\u0001\u001f\u007f', '\u20ac \ud83d\ude00 \u00f6 \u2028\u2029', '<script>alert(1)</script>', 'x'.repeat(3000)];
    const values: unknown[] = [
      null,
      undefined,
      [],
      {},
      [{ entity: 'Order', id: '7', operation: 'update', fields: { total: { from: 10, to: 12.5 }, '\u20ac': { from: null, to: true } } }],
      { z: 1, a: { y: true, b: null }, '\ud83d\ude00': [1e21, 1e-7, -0, 0.1 + 0.2, Number('333333333.33333329'), Number.MAX_SAFE_INTEGER] },
      { nested: [[['deep']]], date: new Date('2026-01-02T03:04:05.678Z'), empty: '' },
      [null, 'a', 2, false],
      42,
      true,
    ];
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      const pick = <T>(list: readonly T[], salt: number): T => list[(i * 7 + salt * 13 + ((i * salt) % 11)) % list.length]!;
      const row = {
        ...event,
        id: `0190a0b4-7a1e-7cc0-8e6f-${String(i).padStart(12, '0')}`,
        occurredAt: i % 2 ? new Date(1_700_000_000_000 + i * 1_234_567) : new Date(1_700_000_000_000 + i).toISOString(),
        action: pick(strings, 1) || 'a.b',
        actorId: pick([...strings, null, undefined], 2),
        actorDisplay: pick([...strings, null], 3),
        userAgent: pick([...strings, undefined], 4),
        reason: pick([...strings, null], 5),
        path: pick(strings, 6),
        changes: pick(values, 7),
        context: pick(values, 8),
        error: pick(values, 9),
      } as CanonicalEventInput;
      expect(canonicalEventJson(row)).toBe(wholeEventJson(row));
      compared++;
    }
    expect(compared).toBe(400);
  });

  it('member by member, a value JSON cannot carry is refused with its place named, as for the whole object', () => {
    expect(() => canonicalEventJson({ ...event, reason: 'x\ud800' })).toThrow(/\$\.reason: the string holds a lone UTF-16 surrogate/);
    expect(() => canonicalEventJson({ ...event, context: { a: [1, Number.NaN] } } as unknown as CanonicalEventInput)).toThrow(/\$\.context\.a\[1\]: NaN is not a JSON number/);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => canonicalEventJson({ ...event, error: cyclic } as unknown as CanonicalEventInput)).toThrow(TypeError);
  });
});

describe('appendLeaves (the integrator growing the stored tree)', () => {
  const vectorLeaves = LEAF_INPUTS.map((input) => leafHash(Buffer.from(input, 'hex')));
  const many = Array.from({ length: 70 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));

  it('grown in batches of any size, gives the RFC 9162 root and stores every perfect subtree exactly once', () => {
    for (const batch of [1, 2, 3, 5, 8, 13, 70]) {
      const stored = new Map<string, Buffer>();
      let frontier: HashedNode[] = [];
      for (let size = 0; size < many.length; size += batch) {
        const chunk = many.slice(size, size + batch);
        const grown = appendLeaves(size, frontier, chunk);
        for (const node of grown.nodes) {
          expect(stored.has(`${node.level}:${node.index}`)).toBe(false);
          stored.set(`${node.level}:${node.index}`, node.hash);
        }
        frontier = grown.frontier;
        expect(grown.root.equals(rootHash(many.slice(0, size + chunk.length)))).toBe(true);
      }
      // Every perfect subtree of the final tree is there, with the hash of its leaves.
      for (let level = 0; 2 ** level <= many.length; level++) {
        for (let index = 0; (index + 1) * 2 ** level <= many.length; index++) {
          const expected = rootHash(many.slice(index * 2 ** level, (index + 1) * 2 ** level));
          expect(stored.get(`${level}:${index}`)?.equals(expected)).toBe(true);
        }
      }
      expect(stored.size).toBe(2 * many.length - [...many.length.toString(2)].filter((bit) => bit === '1').length);
    }
  });

  it('matches the published root of every tree size of the test vectors, one leaf at a time', () => {
    let frontier: HashedNode[] = [];
    vectorLeaves.forEach((leaf, size) => {
      const grown = appendLeaves(size, frontier, [leaf]);
      expect(grown.root.toString('hex'), `size ${size + 1}`).toBe(ROOT_HASHES[size + 1]);
      frontier = grown.frontier;
    });
  });

  it('refuses a frontier that does not fit the size', () => {
    const grown = appendLeaves(0, [], many.slice(0, 3));
    expect(() => appendLeaves(4, grown.frontier, [many[3]!])).toThrow(InvalidMerkleInputError);
    expect(() => appendLeaves(3, grown.frontier, [Buffer.alloc(3)])).toThrow(/must be a 32-byte hash/);
  });
});
