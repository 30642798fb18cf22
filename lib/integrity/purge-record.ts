import { formatCheckpoint, type Checkpoint } from './checkpoint-note.js';
import { combineSubtrees, HASH_LENGTH, perfectSubtrees } from './merkle.js';

/**
 * A purge record: a signed checkpoint of the tree at the last purged `seq` (N), whose
 * extension lines say that events 1 to N were removed by the retention purge, and carry
 * the tree's right edge at N (the hashes of its perfect subtrees, largest first, at most
 * 64). With them a verifier continues the tree from N without the removed events, and
 * the checkpoints signed before the purge (over the events themselves) bind that edge:
 *
 * ```
 * audit.example.com/orders
 * 500000
 * <base64 root at 500000>
 * purge 2026-01-01T00:00:00.000Z
 * frontier <base64> <base64> …
 * ```
 */
export interface PurgeRecord {
  /** The last purged `seq`: events 1 to `treeSize` were removed. */
  treeSize: number;
  /** The purge's cut-off (`before`), ISO 8601. */
  before: string;
  /** The right edge of the tree at `treeSize`: its perfect subtrees' hashes, largest first. */
  frontier: Buffer[];
}

/** The action of the event each purge records (its context holds the signed record). */
export const PURGE_ACTION = 'audit.purged';

const PURGE_PREFIX = 'purge ';
const FRONTIER_PREFIX = 'frontier ';

/** The note text of a purge record (to be signed). */
export function formatPurgeRecord(origin: string, record: PurgeRecord): string {
  return formatCheckpoint({
    origin,
    treeSize: record.treeSize,
    rootHash: combineSubtrees(record.frontier),
    extensions: [`${PURGE_PREFIX}${record.before}`, `${FRONTIER_PREFIX}${record.frontier.map((hash) => hash.toString('base64')).join(' ')}`],
  });
}

/** Whether a signed note's text looks like a purge record (its signature is not checked). */
export function isPurgeNote(note: string): boolean {
  if (typeof note !== 'string') return false;
  const end = note.indexOf('\n\n');
  const text = end < 0 ? note : note.slice(0, end + 1);
  return text.split('\n').slice(3).some((line) => line.startsWith(PURGE_PREFIX));
}

/**
 * The purge record a checkpoint carries, `undefined` when it carries none.
 * @throws Error when its lines are malformed or its edge does not hash to its root.
 */
export function readPurgeRecord(checkpoint: Checkpoint): PurgeRecord | undefined {
  const purge = checkpoint.extensions.find((line) => line.startsWith(PURGE_PREFIX));
  if (purge === undefined) return undefined;
  const before = purge.slice(PURGE_PREFIX.length);
  if (Number.isNaN(Date.parse(before))) throw new Error(`the purge line names no time: ${JSON.stringify(purge)}`);
  const line = checkpoint.extensions.find((l) => l.startsWith(FRONTIER_PREFIX));
  if (line === undefined) throw new Error('the purge record has no frontier line');
  const treeSize = Number(checkpoint.treeSize);
  const expected = treeSize === 0 ? 0 : perfectSubtrees({ start: 0, end: treeSize }).length;
  const frontier = line
    .slice(FRONTIER_PREFIX.length)
    .split(' ')
    .filter((part) => part !== '')
    .map((part) => Buffer.from(part, 'base64'));
  if (frontier.length !== expected || frontier.some((hash) => hash.length !== HASH_LENGTH)) {
    throw new Error(`the frontier holds ${frontier.length} hashes; a tree of ${treeSize} leaves has ${expected} of ${HASH_LENGTH} bytes`);
  }
  if (treeSize === 0 || !combineSubtrees(frontier).equals(checkpoint.rootHash)) {
    throw new Error('the frontier does not hash to the record\'s root');
  }
  return { treeSize, before, frontier };
}

/** Notes split into checkpoints and purge records (a checkpoints file may hold both). */
export function splitPurgeNotes(notes: readonly string[]): { checkpoints: string[]; purges: string[] } {
  const checkpoints: string[] = [];
  const purges: string[] = [];
  for (const note of notes) (isPurgeNote(note) ? purges : checkpoints).push(note);
  return { checkpoints, purges };
}
