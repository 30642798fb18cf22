import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSigner, createVerifier, formatCheckpoint, signNote, verifierKey } from '../../lib/integrity/checkpoint-note.js';
import {
  MAX_REPORTED_PROBLEMS,
  mergeCheckpoints,
  verifyLog,
  type AuditLogSourceEvent,
  type AuditLogSourceLeaf,
} from '../../lib/integrity/log-verifier.js';
import { leafHash, perfectSubtrees, rootHash } from '../../lib/integrity/merkle.js';
import { formatPurgeRecord } from '../../lib/integrity/purge-record.js';

const ORIGIN = 'audit.example.test/log';
const { privateKey } = generateKeyPairSync('ed25519');
const signer = createSigner(ORIGIN, privateKey);
const verifiers = [createVerifier(ORIGIN, createPublicKey(privateKey))];

interface Log {
  events: AuditLogSourceEvent[];
  leaves: AuditLogSourceLeaf[];
  checkpoints: string[];
}

const hashOf = (text: string): Buffer => leafHash(Buffer.from(text));

/** A log of `n` events, their leaves, and a signed checkpoint at each size given. */
function makeLog(n: number, sizes: number[]): Log {
  const events = Array.from({ length: n }, (_, i) => ({ seq: i + 1, id: `event-${i + 1}`, leafHash: hashOf(`content ${i + 1}`) }));
  const leaves = events.map((e, i) => ({ index: i, hash: e.leafHash, eventId: e.id }));
  const checkpoints = sizes.map((size) => checkpoint(leaves.slice(0, size).map((l) => l.hash), size));
  return { events, leaves, checkpoints };
}

function checkpoint(hashes: Buffer[], size: number, sign = signer, origin = ORIGIN): string {
  return signNote(formatCheckpoint({ origin, treeSize: size, rootHash: rootHash(hashes) }), sign);
}

async function* stream<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

const verify = (log: Log, withLeaves = true) =>
  verifyLog({
    events: stream(log.events),
    leaves: withLeaves ? stream(log.leaves) : undefined,
    checkpoints: stream(log.checkpoints),
    verifiers,
  });

const kinds = (result: Awaited<ReturnType<typeof verify>>) => result.problems.map((p) => `${p.kind} ${p.seq ?? ''}${p.treeSize === undefined ? '' : `@${p.treeSize}`}`);

describe('verifyLog: a clean log', () => {
  it.each([
    [1, [1]],
    [2, [1, 2]],
    [3, [2, 3]],
    [7, [1, 4, 7]],
    [8, [3, 5, 8]],
    [13, [0, 6, 11, 13]],
    [100, [17, 31, 64, 99, 100]],
  ])('%i events with checkpoints %j: ok', async (n, sizes) => {
    const log = makeLog(n, sizes);
    const result = await verify(log);
    expect(result).toMatchObject({ ok: true, problems: [], treeSize: n, events: n, checkpoints: sizes.length, unverified: 0 });
    const exported = await verify(log, false);
    expect(exported).toMatchObject({ ok: true, problems: [], treeSize: n });
  });

  it('counts events past the last checkpoint as unverified, not as problems', async () => {
    const log = makeLog(10, [4, 7]);
    expect(await verify(log)).toMatchObject({ ok: true, treeSize: 10, unverified: 3 });
    expect(await verify(log, false)).toMatchObject({ ok: true, treeSize: 10, unverified: 3 });
  });

  it('accepts public keys as PEM text and as verifier key strings', async () => {
    const log = makeLog(9, [5, 9]);
    const pem = createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
    for (const key of [pem, verifierKey(ORIGIN, privateKey)]) {
      const result = await verifyLog({ events: stream(log.events), leaves: stream(log.leaves), checkpoints: stream(log.checkpoints), publicKeys: [key] });
      expect(result.ok).toBe(true);
    }
  });

  it('reports progress', async () => {
    const log = makeLog(25_000, [25_000]);
    const calls: Array<[number, number]> = [];
    await verifyLog({ events: stream(log.events), leaves: stream(log.leaves), checkpoints: stream(log.checkpoints), verifiers, total: 25_000, onProgress: (a, b) => calls.push([a, b]) });
    expect(calls).toEqual([[10_000, 25_000], [20_000, 25_000], [25_000, 25_000]]);
  });
});

describe('verifyLog: tampered events with the stored tree', () => {
  it('a changed event is modified, at its seq', async () => {
    const log = makeLog(12, [5, 12]);
    log.events[6]!.leafHash = hashOf('changed');
    const result = await verify(log);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'modified', seq: 7, id: 'event-7' })]);
  });

  it('a deleted event is missing, named by its leaf', async () => {
    const log = makeLog(12, [5, 12]);
    log.events.splice(3, 1);
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'missing', seq: 4, id: 'event-4' })]);
  });

  it('an event with a seq but no leaf is inserted', async () => {
    const log = makeLog(12, [5, 12]);
    log.events.push({ seq: 13, id: 'forged', leafHash: hashOf('forged') });
    expect(kinds(await verify(log))).toEqual(['inserted 13']);
    const inside = makeLog(12, [5, 12]);
    inside.leaves.splice(8, 1);
    inside.events[8] = { seq: 9, id: 'forged', leafHash: hashOf('forged') };
    expect(kinds(await verify(inside))).toEqual(['inserted 9']);
  });

  it('two events that traded places are both reordered', async () => {
    const log = makeLog(12, [5, 12]);
    const [a, b] = [log.events[2]!, log.events[8]!];
    log.events[2] = { ...b, seq: 3 };
    log.events[8] = { ...a, seq: 9 };
    const result = await verify(log);
    expect(kinds(result)).toEqual(['reordered 3', 'reordered 9']);
  });

  /** `kind seq id` of each problem. */
  const named = (result: Awaited<ReturnType<typeof verify>>) => result.problems.map((p) => `${p.kind} ${p.seq ?? ''}${p.treeSize === undefined ? '' : `@${p.treeSize}`} ${p.id ?? '-'}`);

  it('a forged event inserted in the middle, the later ones moved up: inserted names the forged event, the moved ones are reordered', async () => {
    const log = makeLog(12, [4, 8, 12]);
    const forged = { seq: 5, id: 'forged', leafHash: hashOf('forged') };
    log.events = [...log.events.slice(0, 4), forged, ...log.events.slice(4).map((e) => ({ ...e, seq: e.seq + 1 }))];
    const result = await verify(log);
    expect(named(result)).toEqual(['inserted 5 forged', ...Array.from({ length: 8 }, (_, i) => `reordered ${i + 6} event-${i + 5}`)]);
    expect(result.problems[1]!.message).toContain('sequenced at seq 5');
  });

  it('an event deleted in the middle, the later ones moved down: missing names it, the moved ones are reordered, none truncated', async () => {
    const log = makeLog(12, [4, 8, 12]);
    log.events = [...log.events.slice(0, 3), ...log.events.slice(4).map((e) => ({ ...e, seq: e.seq - 1 }))];
    expect(named(await verify(log))).toEqual(['missing 4 event-4', ...Array.from({ length: 8 }, (_, i) => `reordered ${i + 4} event-${i + 5}`)]);
  });

  it('an event moved and changed is modified, naming the seq it was sequenced at', async () => {
    const log = makeLog(12, [12]);
    log.events = log.events.filter((e) => e.seq !== 3);
    log.events.push({ seq: 13, id: 'event-3', leafHash: hashOf('changed') });
    const result = await verify(log);
    expect(named(result)).toEqual(['modified 13 event-3']);
    expect(result.problems[0]!.message).toContain('sequenced at seq 3');
  });

  it('leaves that name no event fall back to hashes: a changed event is modified, swapped events reordered', async () => {
    const changed = makeLog(8, [8]);
    changed.leaves = changed.leaves.map((l) => ({ ...l, eventId: null }));
    changed.events[5]!.leafHash = hashOf('changed');
    expect(named(await verify(changed))).toEqual(['modified 6 event-6']);
    const swapped = makeLog(8, [8]);
    swapped.leaves = swapped.leaves.map((l) => ({ ...l, eventId: null }));
    [swapped.events[1], swapped.events[6]] = [{ ...swapped.events[6]!, seq: 2 }, { ...swapped.events[1]!, seq: 7 }];
    expect(named(await verify(swapped))).toEqual(['reordered 2 event-7', 'reordered 7 event-2']);
  });

  it('a shift longer than the report: the report is cut, and what it keeps is classified by id', async () => {
    const n = 3 * MAX_REPORTED_PROBLEMS;
    const down = makeLog(n, [n]);
    down.events = [...down.events.slice(0, 3), ...down.events.slice(4).map((e) => ({ ...e, seq: e.seq - 1 }))];
    const up = makeLog(n, [n]);
    up.events = [...up.events.slice(0, 4), { seq: 5, id: 'forged', leafHash: hashOf('forged') }, ...up.events.slice(4).map((e) => ({ ...e, seq: e.seq + 1 }))];
    for (const [log, first] of [
      [down, 'missing 4 event-4'],
      [up, 'inserted 5 forged'],
    ] as const) {
      const result = await verify(log);
      expect(result.truncatedReport).toBe(true);
      expect(result.problems).toHaveLength(MAX_REPORTED_PROBLEMS);
      expect(named(result)[0]).toBe(first);
      expect(result.problems.slice(1).filter((p) => p.kind !== 'reordered')).toEqual([]);
    }
  });

  it('events removed from the end (leaves kept) are truncated, one problem per seq', async () => {
    const log = makeLog(12, [5, 12]);
    log.events.splice(9);
    const result = await verify(log);
    expect(result.problems).toEqual([
      expect.objectContaining({ kind: 'truncated', seq: 10, id: 'event-10' }),
      expect.objectContaining({ kind: 'truncated', seq: 11, id: 'event-11' }),
      expect.objectContaining({ kind: 'truncated', seq: 12, id: 'event-12' }),
    ]);
    expect(result.treeSize).toBe(12);
  });

  it('leaves past the last event that no checkpoint covers are tree rows at fault, not events truncated or missing', async () => {
    const log = makeLog(8, [8]);
    log.leaves.push({ index: 11, hash: hashOf('forged'), eventId: null });
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'inserted', node: { level: 0, index: 11 }, message: expect.stringContaining('past the last event (seq 8)') })]);
    expect(result.problems[0]!.seq).toBeUndefined();

    // Leaves whose events are gone from the end past the last checkpoint: their rows, with the ids they name.
    const tail = makeLog(12, [9]);
    tail.events.splice(10);
    expect((await verify(tail)).problems.map((p) => [p.kind, p.node?.index, p.id])).toEqual([
      ['inserted', 10, 'event-11'],
      ['inserted', 11, 'event-12'],
    ]);
    // Covered by a checkpoint: truncated, as before.
    const covered = makeLog(12, [9, 12]);
    covered.events.splice(10);
    expect(kinds(await verify(covered))).toEqual(['truncated 11', 'truncated 12']);
  });

  it('events and their leaves removed from the end: the last checkpoint is truncated', async () => {
    const log = makeLog(12, [5, 12]);
    log.events.splice(9);
    log.leaves.splice(9);
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'truncated', treeSize: 12, message: expect.stringContaining('only 9') })]);
    expect(result.treeSize).toBe(12);
  });

  it('an event changed together with its leaf: the checkpoint over it is modified', async () => {
    const log = makeLog(12, [5, 8, 12]);
    log.events[6]!.leafHash = hashOf('changed');
    log.leaves[6]!.hash = hashOf('changed');
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'modified', treeSize: 8, message: expect.stringContaining('events 6 to 8') })]);
  });
});

describe('verifyLog: checkpoints', () => {
  it('an altered signature is bad-signature, with the tree size', async () => {
    const log = makeLog(12, [5, 12]);
    const note = log.checkpoints[0]!;
    const sig = note.lastIndexOf(' ') + 10;
    log.checkpoints[0] = note.slice(0, sig) + (note[sig] === 'A' ? 'B' : 'A') + note.slice(sig + 1);
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'bad-signature', treeSize: 5 })]);
  });

  it('a checkpoint signed by an unknown key is bad-signature', async () => {
    const log = makeLog(12, [5, 12]);
    const stranger = createSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
    log.checkpoints[1] = checkpoint(log.leaves.map((l) => l.hash), 12, stranger);
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'bad-signature', treeSize: 12, message: expect.stringContaining('unknown key') })]);
  });

  it('checkSignatures: false reads notes without checking a signature (the result says so), and still checks their roots and shape', async () => {
    const log = makeLog(12, [5, 12]);
    const stranger = createSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
    log.checkpoints[1] = checkpoint(log.leaves.map((l) => l.hash), 12, stranger);
    const keyless = (l: Log) => verifyLog({ events: stream(l.events), leaves: stream(l.leaves), checkpoints: stream(l.checkpoints), checkSignatures: false });
    expect(await keyless(log)).toMatchObject({ ok: true, problems: [], checkpoints: 2, signaturesChecked: false });
    expect((await verify(log)).signaturesChecked).toBeUndefined();
    log.events[2] = { ...log.events[2]!, leafHash: hashOf('changed') };
    log.leaves[2] = { ...log.leaves[2]!, hash: hashOf('changed') };
    expect(kinds(await keyless(log))).toEqual(['modified @5']);
    const clean = makeLog(12, [5, 12]);
    clean.checkpoints[0] = clean.checkpoints[0]!.replace(/\n\n.*$/s, '\n\nnot a signature line\n');
    expect(await keyless(clean)).toMatchObject({ ok: false, problems: [expect.objectContaining({ kind: 'bad-signature', treeSize: 5 })] });
  });

  it('a validly signed wrong root between two good checkpoints is inconsistent', async () => {
    const log = makeLog(12, [3, 7, 12]);
    log.checkpoints[1] = checkpoint([...log.leaves.slice(0, 6).map((l) => l.hash), hashOf('other')], 7);
    const result = await verify(log);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'inconsistent', treeSize: 7 })]);
    expect(await verify(log, false)).toMatchObject({ problems: [expect.objectContaining({ kind: 'inconsistent', treeSize: 7 })] });
  });

  it('two different roots signed for one size are inconsistent; the same note twice counts once', async () => {
    const log = makeLog(8, [4, 8]);
    const twice = { ...log, checkpoints: [log.checkpoints[0]!, log.checkpoints[0]!, log.checkpoints[1]!] };
    expect((await verify(twice)).ok).toBe(true);
    const forked = { ...log, checkpoints: [log.checkpoints[0]!, checkpoint([hashOf('x'), hashOf('y'), hashOf('z'), hashOf('w')], 4), log.checkpoints[1]!] };
    expect(kinds(await verify(forked))).toEqual(['inconsistent 4@4']);
  });

  it('a checkpoint of another origin is inconsistent', async () => {
    const log = makeLog(8, [4, 8]);
    const other = createSigner(ORIGIN, privateKey);
    log.checkpoints[1] = checkpoint(log.leaves.map((l) => l.hash), 8, other, 'elsewhere.test/log');
    expect(kinds(await verify(log))).toEqual(['inconsistent 8@8']);
  });
});

describe('verifyLog: an export (no stored tree)', () => {
  it('a changed event makes the first checkpoint over it modified', async () => {
    const log = makeLog(12, [4, 8, 12]);
    log.events[5]!.leafHash = hashOf('changed');
    const result = await verify(log, false);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'modified', treeSize: 8, message: expect.stringContaining('events 5 to 8') })]);
  });

  it('a gap is missing, a repeated seq reordered, a gap at the end truncated', async () => {
    const log = makeLog(12, [4, 12]);
    const events = [...log.events];
    events.splice(5, 1);
    events.splice(7, 0, { ...events[7]! });
    events.splice(10);
    const result = await verify({ ...log, events }, false);
    expect(kinds(result)).toEqual(['missing 6', 'reordered 9', 'truncated 11', 'truncated 12']);
    expect(result.treeSize).toBe(12);
  });

  it('merges external checkpoints into the stored ones by size; a note both stored and outside is given once, another note of the same size too', async () => {
    const log = makeLog(9, [3, 6, 9]);
    const fork = checkpoint([hashOf('x'), hashOf('y'), hashOf('z')], 3);
    const merged: string[] = [];
    const external = [log.checkpoints[1]!, log.checkpoints[0]!, fork, log.checkpoints[2]!, log.checkpoints[1]!];
    for await (const note of mergeCheckpoints(stream([log.checkpoints[0]!, log.checkpoints[2]!]), external)) merged.push(note);
    expect(merged).toEqual([log.checkpoints[0], fork, log.checkpoints[1], log.checkpoints[2]]);
    // The anchor's copy of every stored checkpoint: three checkpoints checked, not six.
    const result = await verifyLog({ events: stream(log.events), leaves: stream(log.leaves), checkpoints: mergeCheckpoints(stream(log.checkpoints), log.checkpoints), verifiers });
    expect(result).toMatchObject({ ok: true, checkpoints: 3 });
  });
});

describe('verifyLog: after a purge of events 1 to N (a signed purge record)', () => {
  /** The purge record of the first `size` leaves of `log`, signed with `sign`. */
  function purgeRecord(log: Log, size: number, sign = signer): string {
    const hashes = log.leaves.slice(0, size).map((l) => l.hash);
    const frontier = perfectSubtrees({ start: 0, end: size }).map((node) =>
      rootHash(hashes.slice(node.index * 2 ** node.level, (node.index + 1) * 2 ** node.level)),
    );
    return signNote(formatPurgeRecord(ORIGIN, { treeSize: size, before: '2026-01-01T00:00:00.000Z', frontier }), sign);
  }

  const purged = (log: Log, n: number): Log => ({ ...log, events: log.events.slice(n) });
  const verifyPurged = (log: Log, purges: string[], withLeaves: boolean) =>
    verifyLog({ events: stream(log.events), leaves: withLeaves ? stream(log.leaves) : undefined, checkpoints: stream(log.checkpoints), purges, verifiers });

  it.each([1, 5, 7, 8, 11])('events 1 to %i purged: ok with the stored tree and as an export', async (n) => {
    const log = makeLog(13, [3, 8, 13]);
    const record = purgeRecord(log, n);
    const withTree = await verifyPurged(purged(log, n), [record], true);
    expect(withTree).toMatchObject({ ok: true, problems: [], purgedThrough: n, treeSize: 13 });
    const exported = await verifyPurged(purged(log, n), [record], false);
    expect(exported).toMatchObject({ ok: true, problems: [], purgedThrough: n, treeSize: 13, events: 13 - n });
  });

  it('without the record the purged events are missing; with it, a gap after it still is', async () => {
    const log = makeLog(10, [4, 10]);
    expect(kinds(await verifyPurged(purged(log, 4), [], true))).toEqual(['missing 1', 'missing 2', 'missing 3', 'missing 4']);
    const events = purged(log, 4).events.filter((e) => e.seq !== 7);
    expect(kinds(await verifyPurged({ ...log, events }, [purgeRecord(log, 4)], true))).toEqual(['missing 7']);
    expect(kinds(await verifyPurged({ ...log, events }, [purgeRecord(log, 4)], false))).toEqual(['missing 7']);
  });

  it('a record signed by another key, or whose edge does not hash to its root, counts for nothing', async () => {
    const log = makeLog(6, [6]);
    const other = createSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
    expect(kinds(await verifyPurged(purged(log, 2), [purgeRecord(log, 2, other)], true))).toEqual(['missing 1', 'bad-signature 2@2', 'missing 2']);
    const bent = signNote(formatPurgeRecord(ORIGIN, { treeSize: 2, before: '2026-01-01T00:00:00.000Z', frontier: [hashOf('x')] }), signer);
    // formatPurgeRecord derives the root from the edge; swap in the real root to make them disagree.
    const real = formatCheckpoint({ origin: ORIGIN, treeSize: 2, rootHash: rootHash(log.leaves.slice(0, 2).map((l) => l.hash)) });
    const forged = signNote(real + bent.slice(bent.indexOf('purge '), bent.indexOf('\n\n') + 1), signer);
    expect(kinds(await verifyPurged(purged(log, 2), [forged], false))).toContain('inconsistent 2@2');
  });

  it('an export still holding purged events skips them; a later, wrong checkpoint is still found', async () => {
    const log = makeLog(9, [3, 9]);
    const record = purgeRecord(log, 5);
    expect(await verifyPurged(log, [record], false)).toMatchObject({ ok: true, purgedThrough: 5 });
    const changed = { ...log, events: log.events.map((e) => (e.seq === 8 ? { ...e, leafHash: hashOf('changed') } : e)) };
    expect(kinds(await verifyPurged(purged(changed, 5), [record], false))).toEqual(['modified @9']);
  });
});
