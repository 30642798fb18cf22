import type {
  AuditIntegrityProblem,
  AuditIntegrityProblemKind,
  AuditIntegrityTreeNode,
  AuditPublicKey,
  AuditVerifyResult,
} from '../interfaces/audit-integrity.interface.js';
import { openNote, parseCheckpoint, type NoteVerifier } from './checkpoint-note.js';
import { emptyRootHash, nodeHash, perfectSubtrees } from './merkle.js';
import { signatureKeyNames, verifiersFor } from './proofs.js';
import { readPurgeRecord, type PurgeRecord } from './purge-record.js';

/** Problems listed at most; more set `truncatedReport`. */
export const MAX_REPORTED_PROBLEMS = 10_000;

/** How often (in positions walked) `onProgress` is called. */
const PROGRESS_EVERY = 10_000;

/** One sequenced event, as a source reads it: its position and the hash of its content. */
export interface AuditLogSourceEvent {
  /** The event's `seq` (from 1): its leaf is at index `seq - 1`. */
  seq: number;
  id: string;
  /**
   * `leafHash(canonicalEventJson(row))` of the event as stored now (empty when the row
   * cannot be hashed at all, which then never matches anything).
   */
  leafHash: Buffer;
}

/** One stored leaf (a level-0 row of `audit_tree`). */
export interface AuditLogSourceLeaf {
  /** The leaf's index, from 0 (`seq - 1`). */
  index: number;
  /** The stored hash (32 bytes; anything else never matches). */
  hash: Buffer;
  /** The event the leaf names, when stored. */
  eventId: string | null;
}

/** One stored inner node (a row of `audit_tree` at level 1 or above). */
export interface AuditLogSourceNode {
  /** The node's index in its level, from 0: it covers leaves `index * 2^level` to `(index + 1) * 2^level - 1`. */
  index: number;
  /** The stored hash (32 bytes; anything else never matches). */
  hash: Buffer;
}

/** The data a verification walks: the log's events, its stored tree leaves, and its checkpoints. */
export interface AuditLogData {
  /** Sequenced events, ascending by `seq`. */
  events: AsyncIterable<AuditLogSourceEvent>;
  /** Stored leaves, ascending by index; absent for an export, which has no tree. */
  leaves?: AsyncIterable<AuditLogSourceLeaf>;
  /**
   * The stored inner nodes of one level (1 and above), ascending by index; absent for an
   * export. The walk reads each level as it forms that level's nodes (one open stream per
   * level, O(log n) of them).
   */
  nodes?: (level: number) => AsyncIterable<AuditLogSourceNode>;
  /**
   * Signed checkpoint notes, ascending by tree size (merge stored and external ones with
   * {@link mergeCheckpoints}).
   */
  checkpoints: AsyncIterable<string>;
  /**
   * The event with this id wherever it is now (any seq, or none), with its leaf hash;
   * absent for an export. Asked only for a stored leaf whose event is not where the walk
   * looked (at its leaf's position or among the events that did not pair up): one whose
   * seq was set back to NULL, or that was taken into the tree a second time.
   */
  eventById?: (id: string) => Promise<{ seq: number | null; leafHash: Buffer } | undefined>;
  /**
   * Signed purge records (checkpoint notes saying that events 1 to N were removed by the
   * retention purge); the largest that verifies is the log's start.
   */
  purges?: readonly string[];
}

/** What {@link verifyLog} reads: the data, the keys to check signatures with, and a progress callback. */
export interface AuditLogSource extends AuditLogData {
  /** Verifiers of the keys checkpoints may be signed with. */
  verifiers?: readonly NoteVerifier[];
  /**
   * Public keys in any form (PEM, `KeyObject`, verifier key string); each note gets
   * verifiers from them with `verifiersFor` (a PEM key carries no name).
   */
  publicKeys?: readonly AuditPublicKey[];
  /**
   * `false`: no key is at hand, so checkpoint and purge-record signatures are not checked
   * (their shape, sizes and roots still are); the result says `signaturesChecked: false`.
   * Whoever can write the database can then also write checkpoints that agree with it.
   */
  checkSignatures?: boolean;
  /** Called every 10,000 positions and at the end with the events checked and `total`. */
  onProgress?: (checked: number, total: number) => void;
  /** The number of events expected, for `onProgress` (0 when unknown). */
  total?: number;
}

/**
 * Checks an audit log against its Merkle tree and signed checkpoints, streaming: memory
 * stays constant (O(log n) hashes for the tree, plus the bounded list of problems and
 * the events and stored leaves that do not pair up, at most {@link MAX_REPORTED_PROBLEMS}
 * of each; past them the report is cut, and those kept are still matched by id).
 *
 * The walk goes through the positions `i = 0 … N-1` (`seq = i + 1`), `N` being the
 * largest of the last signed checkpoint's size, the number of stored leaves and the
 * largest event `seq`, and pairs the event of `seq = i + 1` with the stored leaf of index `i`:
 *
 * - The tree is built from the stored leaf when there is one (unless the leaf row was found
 *   altered, below), else from the event's hash;
 *   the root of the tree at every checkpoint's size is compared with the signed root.
 * - An event and a stored leaf that do not pair up (the hashes differ, or one of the two is
 *   absent) are classified at the end by the event id the leaf names (by hash for a leaf
 *   that names none), among such positions only:
 *   - an event whose own leaf is at another position is `reordered` (at the seq it has now;
 *     `modified` when its content changed too), one over its own leaf `modified`;
 *   - an event no stored leaf names is `inserted` (the log gives an event its `seq` and its
 *     leaf in one transaction): a forged row, at a free seq or at another event's;
 *   - a stored leaf whose event is nowhere in the log is `missing` (the id comes from the
 *     leaf); when no event follows it (the last rows were removed), `truncated` instead,
 *     where a signed checkpoint covers it; past the last event and every checkpoint, no
 *     event is known to have been there: the leaf is `inserted`, with `node` (a tree row).
 *   So a forged row slipped in or a row deleted, with the later `seq`s moved to hide it, is
 *   `inserted` or `missing`, and each moved event `reordered`.
 * - A stored leaf that hashes like the event at its position but names another event (its
 *   `event_id` was changed; the hash covers the id) is `modified` at that `seq`, with `node`.
 * - A stored leaf the event at its position does not hash to, where the event's hash with
 *   its sibling's stored leaf is the stored node above them (or, for the last leaf of a
 *   signed tree of odd size, which RFC 9162 promotes unpaired, rebuilds that tree's signed
 *   root), had its hash changed: the event is as it was sequenced (a changed event cannot
 *   rebuild the node, whose hash covers both children), and the problem is `modified` at
 *   that `seq` with `node: { level: 0, index: seq - 1 }`; the tree is built from the
 *   event's hash from there on. A leaf altered together with the node above it cannot be
 *   told from a changed event, and is reported as one.
 * - Each inner node of the stored tree is compared with the hash the walk forms from the
 *   stored leaves below it, as it forms it (in order, one stream per level): a node that
 *   differs is `modified`, one that is absent `missing`, each with `node` (no `seq`). Only
 *   nodes whose leaves are all stored are compared, and a node is reported when a signed
 *   root that the walk reproduces covers its leaves, or no signed checkpoint does; under a
 *   signed root the walk does not reproduce, the leaves themselves were altered and that
 *   checkpoint's problem says so.
 * - Without a tree (an export): a `seq` repeated or out of order is `reordered`; a gap
 *   is `missing`, a gap at the end up to the last checkpoint's size is `truncated` (one
 *   problem per `seq`); events past the last checkpoint are counted as `unverified`.
 *   A position with neither event nor leaf is `missing` while a checkpoint or stored leaf
 *   further on covers it, and not a problem beyond them. No leaf names an event there, so
 *   events moved to other `seq`s (to hide a row slipped in or deleted) show only as the
 *   first checkpoint over them not matching (`modified` with its tree size, below), plus
 *   `truncated` for the `seq`s an export that came up short lacks.
 *
 * Checkpoints:
 *
 * - A note that does not open with the keys (bad signature, malformed, no known signer)
 *   is `bad-signature`, with its tree size when the text names one.
 * - A note whose origin is not the first checkpoint's is `inconsistent`; so is a second,
 *   different root signed for the same size (identical roots count once).
 * - A signed root that differs from the walk's root at that size is `inconsistent` when
 *   a later signed checkpoint matches the walk (it is not extended by its successor); else
 *   it is explained by a per-event problem at or below its size and reported no further;
 *   else it is `modified` (with `treeSize`): the rows between the last matching
 *   checkpoint and it do not hash to the signed root, so the tree rows were altered too.
 *   Such a checkpoint explains the mismatches of the ones after it.
 * - A checkpoint larger than the positions the tree rows and events cover is
 *   `truncated` (with a tree, one problem per checkpoint; an export reports the
 *   missing `seq`s themselves).
 *
 * Purges: the largest validly signed purge record (events 1 to N removed) is where the
 * log now starts. With the stored tree, a stored leaf at or below N without its event is
 * not a problem (the leaves stay, and every checkpoint is still checked). Without a tree
 * (an export), the walk starts at N from the record's right edge of the tree: checkpoints
 * below N are not compared (their signatures still are), events at or below N are
 * skipped. A purge record that does not open with the keys is `bad-signature`; one whose
 * edge does not hash to its root is `inconsistent`.
 *
 * Problems come sorted by `seq` (or tree size); at most {@link MAX_REPORTED_PROBLEMS}.
 */
export async function verifyLog(input: AuditLogSource): Promise<AuditVerifyResult> {
  return new LogWalk(input).run();
}

/**
 * The checkpoints of a source merged with external ones (e.g. the anchor's file), in
 * ascending tree size. External notes are sorted by the tree size their text names; a
 * note naming none comes first (it is reported as `bad-signature` anyway).
 */
export async function* mergeCheckpoints(stored: AsyncIterable<string>, external: readonly string[] = []): AsyncGenerator<string> {
  const extra = external.map((note) => ({ note, size: noteTreeSize(note) ?? -1 })).sort((a, b) => a.size - b.size);
  // A note both stored and kept outside (the anchor's copy) is one checkpoint: given once.
  // Equal notes have equal sizes, so only the notes of the current size are remembered.
  let groupSize: number | undefined;
  const group = new Set<string>();
  function* once(note: string, size: number): Generator<string> {
    if (size !== groupSize) {
      groupSize = size;
      group.clear();
    }
    if (group.has(note)) return;
    group.add(note);
    yield note;
  }
  let next = 0;
  for await (const note of stored) {
    const size = noteTreeSize(note) ?? -1;
    while (next < extra.length && extra[next]!.size <= size) {
      const outside = extra[next++]!;
      yield* once(outside.note, outside.size);
    }
    yield* once(note, size);
  }
  for (; next < extra.length; next++) yield* once(extra[next]!.note, extra[next]!.size);
}

/** The tree size a checkpoint note's text names (its second line), when it names one. */
export function noteTreeSize(note: string): number | undefined {
  const line = typeof note === 'string' ? note.split('\n')[1] : undefined;
  if (line === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(line)) return undefined;
  const size = Number(line);
  return Number.isSafeInteger(size) ? size : undefined;
}

/** A checkpoint whose signature verified. */
interface SignedCheckpoint {
  size: number;
  root: Buffer;
  origin: string;
}

/** An event that is not at the position of its own stored leaf: at another event's leaf, or at none. */
interface StrayEvent {
  seq: number;
  id: string;
  hash: Buffer;
  /** The stored leaf at its position, when there is one (it does not hash to the event). */
  leaf?: { hash: Buffer; eventId: string | null };
  /** Already reported (a `seq` repeated or out of order); kept to account for its leaf. */
  reported?: boolean;
  /** Its own stored leaf, found past the strays kept. */
  ownLeaf?: { seq: number; hash: Buffer };
  /**
   * The event's hash, in place of its stored leaf, rebuilds the tree above it (the stored
   * node over it and its sibling, or, for the last leaf of an odd-sized tree, the signed
   * root): the leaf row is at fault, not the event. Says what the event's hash rebuilds.
   */
  leafRowAltered?: string;
}

/** A stored leaf whose event is not at its position: another event is there, or none. */
interface StrayLeaf {
  seq: number;
  id: string | null;
  hash: Buffer;
  /** An event sits at the leaf's position (one that does not hash to it). */
  occupied: boolean;
  /** Its event was found past the strays kept. */
  found?: boolean;
  /** Its event, found by id without a seq or at a seq whose leaf the walk paired with it. */
  elsewhere?: { seq: number | null; hash: Buffer };
}

/** A stored inner node that is not the hash of the stored leaves below it, or that is absent. */
interface StrayNode {
  level: number;
  index: number;
  missing: boolean;
}

/** The leaves a node covers, as a range of positions (`end` excluded). */
const nodeRange = (level: number, index: number): { start: number; end: number } => ({ start: index * 2 ** level, end: (index + 1) * 2 ** level });

/** A hash in hex (a key of the strays' maps; ids are keyed `id:…`). */
const hex = (hash: Buffer): string => hash.toString('hex');

/** RFC 9162 frontier: the hashes of the perfect subtrees of the tree so far, largest first. */
class Frontier {
  private readonly hashes: Buffer[] = [];
  private readonly sizes: number[] = [];

  /** Appends a leaf; `formed` gets each inner node it completes, bottom-up (the level, from 1, and the hash). */
  push(leaf: Buffer, formed?: (level: number, hash: Buffer) => void): void {
    let hash = leaf;
    let size = 1;
    let level = 0;
    while (this.sizes.length > 0 && this.sizes[this.sizes.length - 1] === size) {
      hash = nodeHash(this.hashes.pop()!, hash);
      size += this.sizes.pop()!;
      formed?.(++level, hash);
    }
    this.hashes.push(hash);
    this.sizes.push(size);
  }

  /**
   * The root with the last leaf replaced by `leaf`, when that leaf is not paired (the last
   * leaf of an odd-sized tree, promoted as RFC 9162 does); `undefined` otherwise.
   */
  rootWithLastLeaf(leaf: Buffer): Buffer | undefined {
    if (this.sizes[this.sizes.length - 1] !== 1) return undefined;
    let root = leaf;
    for (let i = this.hashes.length - 2; i >= 0; i--) root = nodeHash(this.hashes[i]!, root);
    return root;
  }

  /** Replaces the last leaf, when it is not paired yet (as {@link rootWithLastLeaf}). */
  replaceLastLeaf(leaf: Buffer): void {
    if (this.sizes[this.sizes.length - 1] === 1) this.hashes[this.hashes.length - 1] = leaf;
  }

  /** The frontier of a tree of `size` leaves from its perfect subtrees' hashes, largest first. */
  static of(size: number, hashes: readonly Buffer[]): Frontier {
    const frontier = new Frontier();
    perfectSubtrees({ start: 0, end: size }).forEach((node, i) => {
      frontier.hashes.push(hashes[i]!);
      frontier.sizes.push(2 ** node.level);
    });
    return frontier;
  }

  root(): Buffer {
    if (this.hashes.length === 0) return emptyRootHash();
    let root = this.hashes[this.hashes.length - 1]!;
    for (let i = this.hashes.length - 2; i >= 0; i--) root = nodeHash(this.hashes[i]!, root);
    return root;
  }
}

/** An async iterator with the next item in view. */
class Peek<T> {
  head: T | undefined;
  private readonly iterator: AsyncIterator<T> | undefined;

  constructor(iterable: AsyncIterable<T> | undefined) {
    this.iterator = iterable?.[Symbol.asyncIterator]();
  }

  async advance(): Promise<T | undefined> {
    if (!this.iterator) return (this.head = undefined);
    const next = await this.iterator.next();
    this.head = next.done ? undefined : next.value;
    return this.head;
  }

  async close(): Promise<void> {
    await this.iterator?.return?.();
  }
}

class LogWalk {
  private readonly problems: AuditIntegrityProblem[] = [];
  private truncatedReport = false;
  private readonly hasLeaves: boolean;
  private readonly events: Peek<AuditLogSourceEvent>;
  private readonly leaves: Peek<AuditLogSourceLeaf>;
  private readonly notes: Peek<string>;
  private readonly verifierCache = new Map<string, NoteVerifier[]>();
  /** The stored inner nodes, one stream per level (index 0 unused), opened as the walk reaches the level. */
  private readonly nodeLevels: Array<Peek<AuditLogSourceNode>> = [];
  /** Positions from here to `pos` all have a stored leaf: the nodes over them are compared. */
  private storedLeavesFrom = 0;
  /** Inner nodes that do not match, settled at the end (at most {@link MAX_REPORTED_PROBLEMS}). */
  private readonly strayNodes: StrayNode[] = [];
  private strayNodesCut = false;
  /**
   * The stored leaf at the last position walked when its index is even (the left child of
   * a level-1 node), with the event over it when that event does not hash to it: settled
   * by the stored node over it and its sibling once the sibling is read, or, as the last
   * leaf of a signed tree of odd size, by that tree's signed root.
   */
  private leftLeaf: { index: number; hash: Buffer; mismatch?: StrayEvent } | undefined;

  /** Positions walked so far (the tree's size). */
  private pos = 0;
  private frontier: Frontier | undefined = new Frontier();
  private eventCount = 0;
  private checkpointCount = 0;
  /** The next validly signed checkpoint not yet compared. */
  private nextCheckpoint: SignedCheckpoint | undefined;
  private origin: string | undefined;
  /** Largest size of a validly signed checkpoint. */
  private lastSignedSize = 0;
  private eventsSinceReached = 0;
  private lastMatchedSize = 0;
  /** Signed checkpoints whose root the walk did not reproduce, waiting for a later one that does. */
  private unmatched: Array<{ size: number; prevSize: number }> = [];
  /** Smallest seq with a per-event problem (mismatches included). */
  private firstEventProblem = Infinity;
  /**
   * Events and stored leaves at positions where they do not pair up, classified at the end
   * by id (see {@link classifyStrays}); at most {@link MAX_REPORTED_PROBLEMS} of each.
   */
  private readonly strayEvents: StrayEvent[] = [];
  private readonly strayLeaves: StrayLeaf[] = [];
  /** The strays kept by the event id (a leaf's `eventId`) and by hash (in hex), for the strays past them. */
  private readonly strayEventBy = new Map<string, StrayEvent>();
  private readonly strayLeafBy = new Map<string, StrayLeaf>();
  /** The largest `seq` of an event found at its position (stored leaves past it without an event are the log's end). */
  private lastEventSeq = 0;
  /** Events 1 to `purgedThrough` were removed by a signed purge. */
  private purgedThrough = 0;
  /** Without a tree: the walk started at this position, from a purge record. */
  private startedAt = 0;
  /** With a tree: the purge record's root, until the walk reaches its size and finds the same root. */
  private purgeRoot: Buffer | undefined;
  /** With a tree: leaves at or below `purgedThrough` without their event, excused once the record matches the tree. */
  private purged: { length: number; entries: Array<{ seq: number; id?: string }> } = { length: 0, entries: [] };

  constructor(private readonly input: AuditLogSource) {
    this.hasLeaves = input.leaves !== undefined;
    this.events = new Peek(input.events);
    this.leaves = new Peek(input.leaves);
    this.notes = new Peek(input.checkpoints);
  }

  async run(): Promise<AuditVerifyResult> {
    try {
      this.readPurges();
      await Promise.all([this.events.advance(), this.leaves.advance(), this.notes.advance()]);
      await this.pullCheckpoint();
      await this.reachCheckpoints();
      await this.walk();
      await this.finish();
    } finally {
      await Promise.all([this.events.close(), this.leaves.close(), this.notes.close(), ...this.nodeLevels.map((level) => level?.close())]);
    }
    const order = (p: AuditIntegrityProblem): number => p.seq ?? p.treeSize ?? (p.node ? nodeRange(p.node.level, p.node.index).start + 1 : 0);
    this.problems.sort((a, b) => order(a) - order(b));
    const positions = this.pos;
    const result: AuditVerifyResult = {
      ok: this.problems.length === 0 && !this.truncatedReport,
      treeSize: Math.max(positions, this.lastSignedSize),
      problems: this.problems,
      events: this.eventCount,
      checkpoints: this.checkpointCount,
      unverified: this.lastSignedSize > positions ? 0 : this.eventsSinceReached,
    };
    if (this.purgedThrough > 0) result.purgedThrough = this.purgedThrough;
    if (this.truncatedReport) result.truncatedReport = true;
    if (this.input.checkSignatures === false) result.signaturesChecked = false;
    this.input.onProgress?.(this.eventCount, this.input.total ?? 0);
    return result;
  }

  private async walk(): Promise<void> {
    for (;;) {
      this.confirmPurge(false);
      // An event at or before a position already walked: its seq repeats or goes back.
      while (this.events.head && this.events.head.seq <= this.pos) {
        const event = this.events.head;
        if (event.seq <= this.startedAt) {
          // An export that still holds purged events (taken while the purge ran): not checkable from the record.
          await this.events.advance();
          continue;
        }
        this.eventCount++;
        this.eventProblem('reordered', event.seq, event.id, `event ${event.seq} comes again after seq ${this.pos} (seq repeated or out of order)`);
        if (this.hasLeaves) this.strayEvent({ seq: event.seq, id: event.id, hash: event.leafHash, reported: true });
        await this.events.advance();
      }
      while (this.leaves.head && this.leaves.head.index < this.pos) await this.leaves.advance();
      const event = this.events.head;
      const leaf = this.leaves.head;
      if (!event && !leaf) return;
      const seq = this.pos + 1;
      const atEvent = event?.seq === seq ? event : undefined;
      const atLeaf = leaf?.index === this.pos ? leaf : undefined;

      if (!atEvent && !atLeaf) {
        this.leftLeaf = undefined;
        await this.gap(Math.min(event ? event.seq - 1 : Infinity, leaf ? leaf.index : Infinity));
        continue;
      }

      if (atEvent) {
        this.eventCount++;
        this.eventsSinceReached++;
        this.lastEventSeq = seq;
      }
      let treeLeaf: Buffer;
      let mismatch: StrayEvent | undefined;
      if (atEvent && atLeaf) {
        treeLeaf = atLeaf.hash;
        if (!atEvent.leafHash.equals(atLeaf.hash)) {
          mismatch = { seq, id: atEvent.id, hash: atEvent.leafHash, leaf: { hash: atLeaf.hash, eventId: atLeaf.eventId } };
          this.strayEvent(mismatch);
          this.strayLeaf({ seq, id: atLeaf.eventId, hash: atLeaf.hash, occupied: true });
        } else if (atLeaf.eventId !== null && atLeaf.eventId !== atEvent.id) {
          // The leaf hash covers the event's id: the event is the leaf's, the tree row's event_id was changed.
          this.eventProblem('modified', seq, atEvent.id, `the stored leaf of event ${seq} names event ${atLeaf.eventId}, though this event hashes to it: the tree row was altered`, {
            level: 0,
            index: this.pos,
          });
        }
      } else if (atLeaf && seq <= this.purgedThrough) {
        treeLeaf = atLeaf.hash; // a purged event: its leaf stays (excused once the record matches the tree)
        this.purged.length++;
        if (this.purged.entries.length < MAX_REPORTED_PROBLEMS) this.purged.entries.push({ seq, id: atLeaf.eventId ?? undefined });
      } else if (atLeaf) {
        treeLeaf = atLeaf.hash;
        this.strayLeaf({ seq, id: atLeaf.eventId, hash: atLeaf.hash, occupied: false });
      } else {
        treeLeaf = atEvent!.leafHash;
        if (this.hasLeaves) this.strayEvent({ seq, id: atEvent!.id, hash: atEvent!.leafHash });
      }
      if (!atLeaf) this.storedLeavesFrom = this.pos + 1;
      if (await this.pairLeaf(atLeaf, mismatch)) treeLeaf = mismatch!.hash;
      const formed: Array<{ level: number; hash: Buffer }> = [];
      this.frontier?.push(treeLeaf, this.input.nodes ? (level, hash) => formed.push({ level, hash }) : undefined);
      for (const { level, hash } of formed) await this.compareNode(level, hash);
      if (atEvent) await this.events.advance();
      if (atLeaf) await this.leaves.advance();
      this.pos++;
      if (this.pos % PROGRESS_EVERY === 0) this.input.onProgress?.(this.eventCount, this.input.total ?? 0);
      await this.reachCheckpoints();
    }
  }

  /**
   * Compares the inner node the walk just formed (over the leaves up to `pos`) with the
   * stored one, reading that level's stream up to it.
   */
  private async compareNode(level: number, hash: Buffer): Promise<void> {
    const index = (this.pos + 1) / 2 ** level - 1;
    if (nodeRange(level, index).start < this.storedLeavesFrom) return; // a leaf below it is not stored
    const stored = await this.storedNode(level, index);
    if (stored && stored.hash.equals(hash)) return;
    if (this.strayNodes.length < MAX_REPORTED_PROBLEMS) this.strayNodes.push({ level, index, missing: !stored });
    else this.strayNodesCut = true;
  }

  /**
   * The stored inner node at `level` (from 1) and `index`, reading that level's stream up
   * to it (nodes are read in ascending index, so only at or past the last one read).
   */
  private async storedNode(level: number, index: number): Promise<AuditLogSourceNode | undefined> {
    let stream = this.nodeLevels[level];
    if (!stream) {
      stream = this.nodeLevels[level] = new Peek(this.input.nodes!(level));
      await stream.advance();
    }
    while (stream.head && stream.head.index < index) await stream.advance();
    return stream.head?.index === index ? stream.head : undefined;
  }

  /**
   * Pairs the stored leaf at `pos` (if any) with the one before it, when the two are
   * siblings: where an event does not hash to its stored leaf, the event's hash with its
   * stored sibling rebuilding the stored node above them says the leaf row was altered,
   * not the event (a node's hash covers both children, so a changed event cannot rebuild
   * it). A leaf row altered together with the node above it is left to the event. The
   * walk then builds the tree from the event's hash; `true` when that is the leaf at `pos`
   * (the one before it is replaced in the frontier here).
   */
  private async pairLeaf(atLeaf: AuditLogSourceLeaf | undefined, mismatch: StrayEvent | undefined): Promise<boolean> {
    const left = this.leftLeaf?.index === this.pos - 1 ? this.leftLeaf : undefined;
    this.leftLeaf = atLeaf && this.pos % 2 === 0 ? { index: this.pos, hash: atLeaf.hash, mismatch } : undefined;
    if (!left || !atLeaf || !this.input.nodes) return false;
    const leftOpen = left.mismatch !== undefined && left.mismatch.leafRowAltered === undefined;
    if (!leftOpen && !mismatch) return false;
    const parent = await this.storedNode(1, left.index / 2);
    if (!parent) return false;
    const rebuilt = `the event's hash with its sibling's stored leaf is the stored node above them (level 1, index ${left.index / 2})`;
    if (leftOpen && nodeHash(left.mismatch!.hash, atLeaf.hash).equals(parent.hash)) {
      left.mismatch!.leafRowAltered = rebuilt;
      this.frontier?.replaceLastLeaf(left.mismatch!.hash);
      return false;
    }
    if (mismatch && nodeHash(left.mismatch?.leafRowAltered === undefined ? left.hash : left.mismatch.hash, mismatch.hash).equals(parent.hash)) {
      mismatch.leafRowAltered = rebuilt;
      return true;
    }
    return false;
  }

  /**
   * Reports the inner nodes that did not match where the leaves below them are vouched
   * for (a signed root the walk reproduced covers them) or no signed checkpoint covers
   * them; under a signed root the walk did not reproduce, the leaves were altered, and that
   * checkpoint (or an event's problem) is reported instead.
   */
  private reportNodes(): void {
    const vouched = Math.max(this.lastMatchedSize, this.purgedThrough);
    for (const { level, index, missing } of this.strayNodes) {
      const { start, end } = nodeRange(level, index);
      if (end > vouched && end <= this.lastSignedSize) continue;
      const over = `over events ${start + 1} to ${end}`;
      this.addProblem({
        kind: missing ? 'missing' : 'modified',
        node: { level, index },
        message: missing
          ? `audit_tree has no node at level ${level}, index ${index} (${over}), though their leaves are stored: the tree row was removed`
          : `audit_tree node at level ${level}, index ${index} (${over}) is not the hash of the stored leaves below it: the tree row was altered`,
      });
    }
    if (this.strayNodesCut) this.truncatedReport = true;
  }

  /** Positions `pos … end-1` have neither event nor stored leaf. */
  private async gap(end: number): Promise<void> {
    this.frontier = undefined;
    while (this.pos < end) {
      const seq = this.pos + 1;
      // A stored leaf further on vouches for the positions before it when an event follows
      // too; leaves past the last event, with no checkpoint over them, are tree rows at fault
      // (see classifyStrays), not a sign that events were there.
      const byLeaf = this.leaves.head !== undefined && this.events.head !== undefined;
      const covered = (this.nextCheckpoint !== undefined && this.nextCheckpoint.size >= seq) || byLeaf;
      if (!covered) {
        // Nothing further on vouches for these positions: jump to the next event.
        this.pos = end;
        break;
      }
      const stop = Math.min(end, byLeaf ? end : this.nextCheckpoint!.size);
      const reportable = Math.min(stop - this.pos, MAX_REPORTED_PROBLEMS - this.problems.length + 1);
      for (let k = 0; k < reportable; k++) {
        this.eventProblem('missing', this.pos + 1 + k, undefined, `event ${this.pos + 1 + k} is missing (no event and no stored leaf at its position)`);
      }
      this.firstEventProblem = Math.min(this.firstEventProblem, seq);
      this.pos = stop;
      await this.reachCheckpoints();
    }
    await this.reachCheckpoints();
  }

  private async finish(): Promise<void> {
    this.confirmPurge(true);
    // Checkpoints past every position walked.
    if (this.nextCheckpoint) {
      if (this.hasLeaves) {
        while (this.nextCheckpoint) {
          const { size } = this.nextCheckpoint;
          this.addProblem({ kind: 'truncated', seq: this.pos + 1, treeSize: size, message: `checkpoint ${size} is signed, but the log has only ${this.pos} events and tree leaves (rows were removed from the end)` });
          this.lastSignedSize = Math.max(this.lastSignedSize, size);
          await this.pullCheckpoint();
        }
      } else {
        let last = this.nextCheckpoint.size;
        while (this.nextCheckpoint) {
          last = Math.max(last, this.nextCheckpoint.size);
          await this.pullCheckpoint();
        }
        this.lastSignedSize = Math.max(this.lastSignedSize, last);
        const reportable = Math.min(last - this.pos, MAX_REPORTED_PROBLEMS - this.problems.length + 1);
        for (let k = 0; k < reportable; k++) {
          const seq = this.pos + 1 + k;
          this.eventProblem('truncated', seq, undefined, `event ${seq} is missing from the end of the export (checkpoint ${last} covers it)`);
        }
        this.firstEventProblem = Math.min(this.firstEventProblem, this.pos + 1);
      }
    }
    await this.lookUpStrayLeafEvents();
    this.classifyStrays();
    this.reportNodes();
    // Checkpoints no later one vindicated: explained by an event's problem; else, with the
    // stored tree, by its nodes over those events (the tree rows were altered) — or, when the
    // events, their leaves and the nodes over them all agree, by the checkpoint itself: it
    // signs a tree this log does not have (it does not extend the checkpoint before it). An
    // export has no tree to tell the two apart: its events are reported as modified.
    let explainedFrom = Infinity;
    for (const { size, prevSize } of this.unmatched) {
      if (Math.min(this.firstEventProblem, explainedFrom) <= size) continue;
      if (this.hasLeaves && this.input.nodes !== undefined && !this.strayNodesCut && !this.strayNodesOver(prevSize, size)) {
        this.addProblem({
          kind: 'inconsistent',
          treeSize: size,
          message:
            `checkpoint ${size} signs a root the log's tree does not have at ${size}, though events ${prevSize + 1} to ${size} match their stored leaves and tree rows: ` +
            (prevSize > 0 ? `it does not extend checkpoint ${prevSize} over this log's events` : `it is not a checkpoint of this log's events`) +
            ` (or those events were rewritten together with their tree rows; a copy of the checkpoint kept outside the database tells which)`,
        });
        continue;
      }
      this.addProblem({
        kind: 'modified',
        treeSize: size,
        message: `events ${prevSize + 1} to ${size} do not hash to the root signed in checkpoint ${size}: events and their tree rows were altered`,
      });
      explainedFrom = prevSize + 1;
    }
  }

  /** Whether a stored tree node found altered or missing lies over any of events `from + 1 … to`. */
  private strayNodesOver(from: number, to: number): boolean {
    return this.strayNodes.some(({ level, index }) => {
      const { start, end } = nodeRange(level, index);
      return end > from && start < to;
    });
  }

  /**
   * With a tree, a purge record counts once the walk reaches its size with the same root:
   * a record signed for another log (same key and origin) or over other leaves excuses
   * nothing, and the leaves it would have excused are `missing`. `end`: the walk is over.
   */
  private confirmPurge(end: boolean): void {
    if (!this.purgeRoot || (this.pos < this.purgedThrough && !end)) return;
    const size = this.purgedThrough;
    const matches = this.pos === size && this.frontier !== undefined && this.frontier.root().equals(this.purgeRoot);
    this.purgeRoot = undefined;
    if (!matches) {
      this.addProblem({
        kind: 'inconsistent',
        treeSize: size,
        message:
          this.pos < size
            ? `purge record ${size} reaches past the log's ${this.pos} tree leaves: it is not this log's`
            : `purge record ${size} signs a root the log's tree does not have at ${size}: it is not this log's, or the tree was altered`,
      });
      for (const { seq, id } of this.purged.entries) {
        this.eventProblem('missing', seq, id, `event ${seq} is missing (its stored leaf remains; no purge record of this log covers it)`);
      }
      if (this.purged.length > this.purged.entries.length) this.truncatedReport = true;
      this.purgedThrough = 0;
    }
    this.purged = { length: 0, entries: [] };
  }

  /**
   * Keeps an event that is not at its own leaf's position. Past {@link MAX_REPORTED_PROBLEMS}
   * the report is cut: the event is only looked for among the leaves kept, so that those are
   * classified right.
   */
  private strayEvent(stray: StrayEvent): void {
    this.firstEventProblem = Math.min(this.firstEventProblem, stray.seq);
    if (this.strayEvents.length < MAX_REPORTED_PROBLEMS) {
      this.strayEvents.push(stray);
      this.strayEventBy.set(`id:${stray.id}`, stray);
      this.strayEventBy.set(hex(stray.hash), stray);
    } else {
      this.truncatedReport = true;
      const leaf = this.strayLeafBy.get(`id:${stray.id}`) ?? this.strayLeafBy.get(hex(stray.hash));
      if (leaf) leaf.found = true;
    }
  }

  /** Keeps a stored leaf whose event is not at its position (past the cap, as {@link strayEvent}). */
  private strayLeaf(stray: StrayLeaf): void {
    this.firstEventProblem = Math.min(this.firstEventProblem, stray.seq);
    if (this.strayLeaves.length < MAX_REPORTED_PROBLEMS) {
      this.strayLeaves.push(stray);
      if (stray.id !== null) this.strayLeafBy.set(`id:${stray.id}`, stray);
      this.strayLeafBy.set(hex(stray.hash), stray);
    } else {
      this.truncatedReport = true;
      const event = this.strayEventBy.get(stray.id !== null ? `id:${stray.id}` : hex(stray.hash));
      if (event) event.ownLeaf ??= { seq: stray.seq, hash: stray.hash };
    }
  }

  /**
   * Looks up, by id, the event of each stored leaf kept that names one not found by the
   * walk: set back to NULL (no seq) or sequenced a second time under another seq, where it
   * paired with a leaf of its own. Only with a source that can look events up by id.
   */
  private async lookUpStrayLeafEvents(): Promise<void> {
    const byId = this.input.eventById;
    if (!byId) return;
    for (const leaf of this.strayLeaves) {
      if (leaf.id === null || leaf.found || this.strayEventBy.has(`id:${leaf.id}`)) continue;
      const event = await byId(leaf.id);
      if (event && event.seq !== leaf.seq) leaf.elsewhere = { seq: event.seq, hash: event.leafHash };
    }
  }

  /**
   * Classifies the events and stored leaves that did not pair up, by the event id each
   * stored leaf names (by hash for a leaf that names none):
   *
   * - an event whose own leaf is at another position is `reordered` (or `modified` when
   *   its content changed too); at its own position, `modified`;
   * - an event that no stored leaf names is `inserted` (a forged row, or one whose id was
   *   changed);
   * - a stored leaf whose event is nowhere in the log is `missing`, or `truncated` when no
   *   event follows it (the last rows were removed) and a checkpoint covers it; with neither,
   *   the tree row itself is reported (`inserted`, with `node`).
   *
   * The event a leaf names is either at that leaf's position or among the strays (ids are
   * unique), so the strays alone settle it. With a leaf that names no event, an event over
   * it whose hash matches no stray leaf is `modified`, as the leaf cannot say whose it is.
   * Problems are added in `seq` order, so that a cut report keeps the first ones.
   */
  private classifyStrays(): void {
    const found: Array<{ kind: AuditIntegrityProblemKind; seq: number; id: string | undefined; message: string; node?: AuditIntegrityTreeNode }> = [];
    const treeRows: AuditIntegrityProblem[] = [];
    const problem = (kind: AuditIntegrityProblemKind, seq: number, id: string | undefined, message: string, node?: AuditIntegrityTreeNode): void => {
      found.push({ kind, seq, id, message, node });
    };
    const changedOrLeafRow = (event: StrayEvent): void => {
      const { seq, id, leafRowAltered } = event;
      if (leafRowAltered === undefined) {
        problem('modified', seq, id, `event ${seq} does not hash to its stored leaf (it was changed)`);
      } else {
        // The event is as sequenced: its hash rebuilds what the stored tree (and a signed root) holds above its leaf.
        problem('modified', seq, id, `the stored leaf of event ${seq} is not the event's hash, though ${leafRowAltered}: the tree row was altered`, { level: 0, index: seq - 1 });
      }
    };
    for (const leaf of this.strayLeaves) {
      if (leaf.found || this.strayEventBy.has(leaf.id !== null ? `id:${leaf.id}` : hex(leaf.hash))) continue; // its event is elsewhere
      if (leaf.id === null && leaf.occupied) continue; // the event over it is reported `modified`
      const id = leaf.id ?? undefined;
      if (leaf.elsewhere) {
        const { seq, hash } = leaf.elsewhere;
        const changed = !hash.equals(leaf.hash);
        const where = seq === null ? 'its seq was set back to NULL' : `it was sequenced again at seq ${seq}`;
        problem(changed ? 'modified' : 'reordered', seq ?? leaf.seq, id, `event ${leaf.seq} is no longer at its place: ${where}${changed ? ', and it was changed' : ''}`);
        continue;
      }
      if (leaf.seq > this.lastEventSeq && leaf.seq > this.lastSignedSize) {
        // Past the last event and no checkpoint: no event is known to have been there, the tree row is at fault.
        const node = { level: 0, index: leaf.seq - 1 };
        const names = leaf.id === null ? 'names no event' : `names event ${leaf.id}, which is not in the log`;
        treeRows.push({
          kind: 'inserted',
          node,
          ...(id === undefined ? {} : { id }),
          message: `audit_tree has a leaf at level 0, index ${leaf.seq - 1} past the last event (seq ${this.lastEventSeq}), which no signed checkpoint covers; it ${names}: the tree row was inserted, or its event removed before a checkpoint signed it`,
        });
      } else if (leaf.seq > this.lastEventSeq) {
        problem('truncated', leaf.seq, id, `event ${leaf.seq} was removed from the end of the log (its stored leaf remains)`);
      } else {
        problem('missing', leaf.seq, id, `event ${leaf.seq} is missing (its stored leaf remains${leaf.occupied ? '; another event has its seq' : ''})`);
      }
    }
    for (const event of this.strayEvents) {
      if (event.reported) continue;
      const { seq, id } = event;
      if (event.leaf?.eventId === id) {
        changedOrLeafRow(event);
        continue;
      }
      const own = this.strayLeafBy.get(`id:${id}`) ?? this.strayLeafBy.get(hex(event.hash)) ?? event.ownLeaf;
      if (own && own.hash.equals(event.hash)) {
        problem('reordered', seq, id, `event ${seq} was sequenced at seq ${own.seq} (it was moved)`);
      } else if (own) {
        problem('modified', seq, id, `event ${seq} was sequenced at seq ${own.seq}, and it was changed too`);
      } else if (event.leaf?.eventId === null) {
        changedOrLeafRow(event);
      } else if (event.leaf) {
        problem('inserted', seq, id, `event ${seq} is not the one its stored leaf names, and no stored leaf names it: it was not sequenced by the log`);
      } else {
        problem('inserted', seq, id, `event ${seq} has no leaf in the stored tree: it was not sequenced by the log`);
      }
    }
    found.sort((a, b) => a.seq - b.seq);
    for (const { kind, seq, id, message, node } of found) this.eventProblem(kind, seq, id, message, node);
    for (const row of treeRows) this.addProblem(row);
  }

  /** Compares the walk's root with every signed checkpoint of the size reached. */
  private async reachCheckpoints(): Promise<void> {
    while (this.nextCheckpoint && this.nextCheckpoint.size <= this.pos) {
      const size = this.nextCheckpoint.size;
      const roots = new Map<string, Buffer>();
      while (this.nextCheckpoint && this.nextCheckpoint.size === size) {
        roots.set(this.nextCheckpoint.root.toString('hex'), this.nextCheckpoint.root);
        await this.pullCheckpoint();
      }
      if (roots.size > 1) {
        this.addProblem({ kind: 'inconsistent', treeSize: size, message: `${roots.size} checkpoints of size ${size} sign different roots` });
      }
      this.lastSignedSize = Math.max(this.lastSignedSize, size);
      if (size === this.pos) this.eventsSinceReached = 0;
      if (!this.frontier) continue;
      if (size < this.startedAt) continue; // before the purge record the walk started from
      if (size < this.pos) {
        this.addProblem({ kind: 'inconsistent', treeSize: size, message: `checkpoint ${size} is listed after a larger one; it was not checked` });
        continue;
      }
      let root = this.frontier.root();
      const left = this.leftLeaf;
      if (left?.mismatch && left.mismatch.leafRowAltered === undefined && left.index === this.pos - 1 && ![...roots.values()].some((r) => r.equals(root))) {
        // The event's stored leaf ends this tree unpaired (RFC 9162 promotes it): the event's
        // hash in its place rebuilding the signed root says the leaf row was altered.
        const promoted = this.frontier.rootWithLastLeaf(left.mismatch.hash);
        if (promoted && [...roots.values()].some((r) => r.equals(promoted))) {
          left.mismatch.leafRowAltered = `the event's hash, as the last leaf of the tree of ${size}, rebuilds the root signed in checkpoint ${size}`;
          this.frontier.replaceLastLeaf(left.mismatch.hash);
          root = promoted;
        }
      }
      if ([...roots.values()].some((r) => r.equals(root))) {
        for (const earlier of this.unmatched) {
          this.addProblem({
            kind: 'inconsistent',
            treeSize: earlier.size,
            message: `checkpoint ${earlier.size} signs a root the log does not have, though checkpoint ${size} after it matches: it is not a prefix of its successor`,
          });
        }
        this.unmatched = [];
        this.lastMatchedSize = size;
      } else {
        this.unmatched.push({ size, prevSize: this.lastMatchedSize });
      }
    }
  }

  /** Reads notes up to the next validly signed one of the log's origin, reporting the others. */
  private async pullCheckpoint(): Promise<void> {
    this.nextCheckpoint = undefined;
    while (this.notes.head !== undefined) {
      const note = this.notes.head;
      await this.notes.advance();
      this.checkpointCount++;
      const signed = this.open(note);
      if (!signed) continue;
      this.origin ??= signed.origin;
      if (signed.origin !== this.origin) {
        this.addProblem({
          kind: 'inconsistent',
          treeSize: signed.size,
          message: `checkpoint ${signed.size} names the log ${JSON.stringify(signed.origin)}, not ${JSON.stringify(this.origin)}`,
        });
        continue;
      }
      this.nextCheckpoint = signed;
      return;
    }
  }

  /** Takes the largest validly signed purge record as the log's start. */
  private readPurges(): void {
    let latest: PurgeRecord | undefined;
    for (const note of this.input.purges ?? []) {
      const signed = this.open(note);
      if (!signed) continue;
      let record: PurgeRecord | undefined;
      try {
        record = readPurgeRecord(signed.checkpoint);
        if (!record) throw new Error('it names no purge');
      } catch (err) {
        this.addProblem({ kind: 'inconsistent', treeSize: signed.size, message: `purge record ${signed.size} is not valid: ${(err as Error).message}` });
        continue;
      }
      this.origin ??= signed.origin;
      if (!latest || record.treeSize > latest.treeSize) latest = record;
    }
    if (!latest) return;
    this.purgedThrough = latest.treeSize;
    if (this.hasLeaves) {
      this.purgeRoot = Frontier.of(latest.treeSize, latest.frontier).root();
    } else {
      this.frontier = Frontier.of(latest.treeSize, latest.frontier);
      this.pos = this.startedAt = latest.treeSize;
    }
  }

  private open(note: string): (SignedCheckpoint & { checkpoint: ReturnType<typeof parseCheckpoint> }) | undefined {
    const named = noteTreeSize(note);
    try {
      const opened = this.input.checkSignatures === false ? openNote(note, [], { signatures: false }) : openNote(note, this.verifiersFor(note));
      const checkpoint = parseCheckpoint(opened.text);
      const size = Number(checkpoint.treeSize);
      if (!Number.isSafeInteger(size)) throw new Error(`tree size ${checkpoint.treeSize} is too large`);
      return { size, root: checkpoint.rootHash, origin: checkpoint.origin, checkpoint };
    } catch (err) {
      const problem: AuditIntegrityProblem = {
        kind: 'bad-signature',
        message: `checkpoint${named === undefined ? '' : ` ${named}`} does not verify: ${(err as Error).message}`,
      };
      if (named !== undefined) problem.treeSize = named;
      this.addProblem(problem);
      return undefined;
    }
  }

  private verifiersFor(note: string): NoteVerifier[] {
    const base = [...(this.input.verifiers ?? [])];
    const keys = this.input.publicKeys ?? [];
    if (keys.length === 0) return base;
    // Verifiers depend only on the key names the note's signature lines carry.
    const names = signatureKeyNames(note).join(' ');
    let cached = this.verifierCache.get(names);
    if (!cached) {
      cached = verifiersFor(note, keys);
      if (this.verifierCache.size < 100) this.verifierCache.set(names, cached);
    }
    return [...base, ...cached];
  }

  private eventProblem(kind: AuditIntegrityProblemKind, seq: number, id: string | undefined, message: string, node?: AuditIntegrityTreeNode): void {
    this.firstEventProblem = Math.min(this.firstEventProblem, seq);
    const problem: AuditIntegrityProblem = { kind, seq, message };
    if (id !== undefined) problem.id = id;
    if (node !== undefined) problem.node = node;
    this.addProblem(problem);
  }

  private addProblem(problem: AuditIntegrityProblem): void {
    // A checkpoint that does not verify or does not extend the log names the seq of the last event it covers.
    if ((problem.kind === 'bad-signature' || problem.kind === 'inconsistent') && problem.seq === undefined && problem.treeSize !== undefined && problem.treeSize > 0) {
      problem.seq = problem.treeSize;
    }
    if (this.problems.length < MAX_REPORTED_PROBLEMS) this.problems.push(problem);
    else this.truncatedReport = true;
  }
}
