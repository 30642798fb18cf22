import canonicalize from 'canonicalize';
import type { AuditLogEntity } from '../storage/audit-log.entity.js';

/**
 * The RFC 8785 (JSON Canonicalization Scheme) text of a JSON value: no whitespace,
 * object members sorted by the UTF-16 code units of their names, strings escaped and
 * numbers written as ECMAScript's `JSON.stringify` writes them (which is what RFC 8785
 * specifies). The same value gives the same text, and so the same bytes in UTF-8,
 * whichever process or database it went through.
 *
 * It follows what a JSON column stores: an object's `toJSON()` is used when present
 * (a `Date` becomes its ISO text), a member whose value is `undefined` is left out, an
 * `undefined` array item is `null`. Values JSON cannot carry are refused rather than
 * silently changed.
 *
 * @throws TypeError for a non-finite number, a `bigint`, a cycle, or a
 *   string holding a lone UTF-16 surrogate, naming where in the value it is.
 */
export function canonicalJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch {
    // Say where the value JSON cannot carry is (the package only says what it is).
    locateProblem(value, '$');
    throw new TypeError('Cannot canonicalise $: the value holds something JSON cannot carry (a cycle?)');
  }
  if (text === undefined) throw new TypeError(`Cannot canonicalise $: a ${typeof value} is not a JSON value`);
  return text;
}

/**
 * The columns of an audit event a leaf of the Merkle tree covers: every column of
 * `audit_log` but `seq` (which is the leaf's position, not its content).
 */
export const CANONICAL_EVENT_FIELDS = [
  'id',
  'occurredAt',
  'action',
  'outcome',
  'kind',
  'actorType',
  'actorId',
  'actorDisplay',
  'source',
  'ip',
  'userAgent',
  'method',
  'route',
  'path',
  'requestId',
  'targetType',
  'targetId',
  'changes',
  'context',
  'reason',
  'error',
] as const satisfies readonly (keyof AuditLogEntity)[];

type CanonicalEventField = (typeof CANONICAL_EVENT_FIELDS)[number];

/** Fails to compile when `audit_log` gains a column the leaf does not cover (or leave out on purpose). */
type Uncovered = Exclude<keyof AuditLogEntity, CanonicalEventField | 'seq'>;
const EVERY_COLUMN_COVERED: [Uncovered] extends [never] ? true : Uncovered = true;
void EVERY_COLUMN_COVERED;

/** An audit event as read from `audit_log` (an entity or a plain row with the entity's property names). */
export type CanonicalEventInput = {
  [K in Exclude<CanonicalEventField, 'occurredAt'>]?: AuditLogEntity[K] | null | undefined;
} & {
  id: string;
  /** A `Date`, or text a `Date` can parse (as a raw query may return it). */
  occurredAt: Date | string;
};

/**
 * The RFC 8785 canonical JSON of an audit event, the content of its Merkle tree leaf:
 * an object with exactly the members of {@link CANONICAL_EVENT_FIELDS}, named as the
 * entity's properties (`actorId`, not `actor_id`); `seq` and anything else on the row
 * are left out. So that one event gives the same bytes on every database:
 *
 * - `occurredAt` is ISO 8601 in UTC with milliseconds, `2026-01-02T03:04:05.678Z`;
 * - a column that is `null` or `undefined` appears as an explicit `null`;
 * - the JSON columns (`changes`, `context`, `error`) appear as the JSON values they hold,
 *   canonicalised like the rest (member order as stored does not matter).
 *
 * @example canonicalEventJson(row) // '{"action":"order.updated","actorDisplay":null,…}'
 * @throws TypeError when `occurredAt` is not a valid date, or a JSON column holds
 *   something JSON cannot carry (see {@link canonicalJson}).
 */
export function canonicalEventJson(row: CanonicalEventInput): string {
  // The members in their canonical order, written one by one: the package canonicalises each
  // JSON column's value; the text columns are JSON strings (which is how RFC 8785 writes
  // them). The same text as canonicalJson() of the whole object (tested), at half the cost:
  // every event is hashed when sequenced, verified, proved and exported.
  let text = '';
  for (let i = 0; i < EVENT_MEMBERS.length; i++) {
    const field = EVENT_MEMBERS[i]!;
    const value = field === 'occurredAt' ? isoUtc(row.occurredAt) : row[field];
    text += MEMBER_HEADS[i];
    if (value === null || value === undefined) {
      text += 'null';
    } else if (typeof value === 'string' && (value as unknown as { isWellFormed(): boolean }).isWellFormed()) {
      text += JSON.stringify(value);
    } else {
      let member: string | undefined;
      try {
        member = canonicalize(value);
      } catch {
        member = undefined;
      }
      // Something JSON cannot carry: the whole object's canonicalisation says where.
      if (member === undefined) return wholeEventJson(row);
      text += member;
    }
  }
  return `${text}}`;
}

/** {@link CANONICAL_EVENT_FIELDS} in RFC 8785 member order (UTF-16 code units of the names). */
const EVENT_MEMBERS: readonly CanonicalEventField[] = [...CANONICAL_EVENT_FIELDS].sort();
/** `{"action":`, `,"actorDisplay":`, …: what precedes each member's value. */
const MEMBER_HEADS: readonly string[] = EVENT_MEMBERS.map((name, i) => `${i === 0 ? '{' : ','}${JSON.stringify(name)}:`);

/** {@link canonicalEventJson} as one object given to {@link canonicalJson} (whose errors name the place). */
export function wholeEventJson(row: CanonicalEventInput): string {
  const event: Record<string, unknown> = {};
  for (const field of CANONICAL_EVENT_FIELDS) {
    event[field] = field === 'occurredAt' ? isoUtc(row.occurredAt) : (row[field] ?? null);
  }
  return canonicalJson(event);
}

/** ISO 8601 UTC with milliseconds. */
function isoUtc(value: Date | string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError(`Cannot canonicalise audit event: occurredAt ${JSON.stringify(String(value))} is not a valid date`);
  return date.toISOString();
}

/** Throws a `TypeError` naming the first place in `value` that JSON cannot carry; returns when there is none. */
function locateProblem(value: unknown, at: string, seen: Set<object> = new Set()): void {
  if (value === null) return;
  switch (typeof value) {
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`Cannot canonicalise ${at}: ${value} is not a JSON number`);
      return;
    case 'string':
      if (!(value as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new TypeError(`Cannot canonicalise ${at}: the string holds a lone UTF-16 surrogate`);
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`Cannot canonicalise ${at}: a ${typeof value} is not a JSON value`);
  }
  if (seen.has(value)) throw new TypeError(`Cannot canonicalise ${at}: the value refers to itself (a cycle)`);
  seen.add(value);
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    locateProblem((withToJson.toJSON as () => unknown).call(value), at, seen);
  } else if (Array.isArray(value)) {
    value.forEach((item: unknown, i) => locateProblem(item === undefined ? null : item, `${at}[${i}]`, seen));
  } else {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      locateProblem(key, `${at} key`, seen);
      if (record[key] !== undefined) locateProblem(record[key], `${at}.${key}`, seen);
    }
  }
  seen.delete(value);
}
