import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { MalformedAuditExportError } from '../exceptions/malformed-audit-export.error.js';
import { canonicalEventJson, canonicalJson, type CanonicalEventInput } from './canonical-json.js';
import { mergeCheckpoints, type AuditLogData, type AuditLogSourceEvent } from './log-verifier.js';
import { leafHashOfText } from './merkle.js';
import { strictJsonProblem } from './strict-json.js';

/*
 * The JSON Lines export of an audit log: one sequenced event per line, ascending by seq,
 * each line the RFC 8785 canonical JSON of the event's canonical object (the content of
 * its Merkle leaf, see canonicalEventJson) with one more member, `seq`. Dropping `seq`
 * and canonicalising again gives back the leaf's exact bytes, so an export is checked
 * against the signed checkpoints without the database. An export of the whole trail ends
 * with the events not sequenced yet, `"seq":null`: no signed tree covers them, and the
 * reader passes over them (taking one out of the sequence leaves a gap, reported missing).
 */

/** An event as read from an export line. */
export interface ExportedEvent extends AuditLogSourceEvent {
  /** The line's object without `seq`: the event's canonical fields. */
  event: Record<string, unknown>;
  /** The line number, from 1. */
  line: number;
}

/** The export line of a sequenced `audit_log` row (without the newline). */
export function exportEventLine(row: CanonicalEventInput & { seq?: number | null }): string {
  const { seq } = row;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    throw new TypeError(`Cannot export event ${JSON.stringify(row.id)}: it has no seq (it is not in the Merkle tree yet)`);
  }
  return canonicalJson({ ...(JSON.parse(canonicalEventJson(row)) as Record<string, unknown>), seq });
}

/**
 * Reads an export's lines, in the file's order, with each event's leaf hash.
 *
 * @throws MalformedAuditExportError for a line that is not a JSON object with a positive
 *   integer `seq` and a string `id`, or not in the canonical form export lines are written
 *   in (RFC 8785: members sorted, each once, no whitespace).
 */
export async function* readExportEvents(path: string): AsyncGenerator<ExportedEvent> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let number = 0;
  try {
    for await (const text of lines) {
      number++;
      if (text.trim() === '') continue;
      const event = parseLine(text, path, number);
      if (event) yield event;
    }
  } finally {
    lines.close();
  }
}

/** One export line read (see {@link readExportEvents}). */
export function parseExportLine(text: string, file: string, line: number): ExportedEvent {
  const event = parseLine(text, file, line);
  if (!event) throw new MalformedAuditExportError(file, line, 'seq null is not a positive integer (the event is not sequenced)');
  return event;
}

/** An export line read; `null` for an event exported before it was sequenced (`"seq":null`), which no tree covers. */
function parseLine(text: string, file: string, line: number): ExportedEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new MalformedAuditExportError(file, line, `not JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedAuditExportError(file, line, 'not a JSON object');
  // JSON export() writes: a member given twice (JSON.parse keeps the last, a reader of the
  // text may see the first) or a number JSON.parse reads as another (past double precision
  // or range) says something else to another reader than what was hashed.
  const problem = strictJsonProblem(text);
  if (problem !== undefined) throw new MalformedAuditExportError(file, line, `${NOT_CANONICAL}: ${problem}`);
  // And exactly the text export() writes: any other form is not an export line.
  let canonical: string | undefined;
  try {
    canonical = canonicalJson(value);
  } catch {
    canonical = undefined;
  }
  if (canonical !== text) {
    throw new MalformedAuditExportError(file, line, NOT_CANONICAL);
  }
  const { seq, ...event } = value as Record<string, unknown>;
  if (seq === null && typeof event['id'] === 'string') return null;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    throw new MalformedAuditExportError(file, line, `seq ${JSON.stringify(seq)} is not a positive integer`);
  }
  if (typeof event['id'] !== 'string') throw new MalformedAuditExportError(file, line, 'the event has no string id');
  let hash: Buffer;
  try {
    hash = leafHashOfText(canonicalJson(event));
  } catch {
    hash = Buffer.alloc(0);
  }
  return { seq, id: event['id'], leafHash: hash, event, line };
}

const NOT_CANONICAL = 'not the canonical JSON of an export line (a member repeated or out of order, or the text reformatted)';

/** An export and its checkpoints as the verifier's input (no stored tree). */
export function exportLogData(path: string, checkpoints: readonly string[]): AuditLogData {
  return { events: readExportEvents(path), checkpoints: mergeCheckpoints(noNotes(), checkpoints) };
}

/** The event of an export with the given id, or `undefined`. */
export async function findExportedEvent(path: string, id: string): Promise<ExportedEvent | undefined> {
  for await (const event of readExportEvents(path)) if (event.id === id) return event;
  return undefined;
}

async function* noNotes(): AsyncGenerator<string> {
  // No stored checkpoints: an export has only those given.
}
