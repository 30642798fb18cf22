import { createHash } from 'node:crypto';

/** What a secret value is stored as. */
export const REDACTED = '[REDACTED]';

/**
 * Arrays and objects nested in one stored JSON document, at most: deeper ones are replaced
 * by {@link DEPTH_MARKER}. MariaDB's `json_valid`, which its JSON columns' CHECK calls,
 * refuses a document of 32 nested arrays and objects. A value stored inside another
 * document (a change's field value) keeps fewer: see the `nestedIn` of {@link toJsonSafe}.
 */
export const MAX_JSON_DEPTH = 31;
/** Characters a string inside a JSON value keeps, at most, marker included. */
export const MAX_JSON_STRING = 64 * 1024;
/** Characters an object key inside a JSON value keeps, at most, marker included. */
export const MAX_JSON_KEY = 1024;
/** Characters an id column holds (`audit_log.target_id`, `actor_id`): a longer id is stored as {@link storedId} cuts it. */
export const MAX_ID_LENGTH = 255;
/** What stands in for a container nested deeper than {@link MAX_JSON_DEPTH} in its document. */
export const DEPTH_MARKER = '[Depth]';
/** What stands in for an object met again inside itself. */
export const CIRCULAR_MARKER = '[Circular]';
/** What stands in for a value whose own code threw while it was read (a getter, `toJSON`). */
export const UNREADABLE_MARKER = '[Unreadable]';
/**
 * What a NUL character (U+0000) becomes: the six characters `\u0000`, so that the stored
 * text still shows what was there. PostgreSQL rejects NUL in text and JSON values.
 */
export const NUL_ESCAPE = '\\u0000';

const NUL = '\u0000';
/** Room kept for the truncation marker: `…[truncated <n> chars; sha256 <16 hex>]`. */
const MARKER_ROOM = 64;

interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/**
 * `value` in a form every supported database stores: each NUL (U+0000) replaced by the
 * text `\u0000`, each lone UTF-16 surrogate (which has no UTF-8 form: Node's encoder
 * turns it into U+FFFD silently, MariaDB rejects it inside JSON, PostgreSQL's jsonb too)
 * replaced by U+FFFD. Valid surrogate pairs (emoji and other astral characters) are kept. A string
 * that needs neither is returned as it is, without copying.
 *
 * @example storable('a\u0000b') // 'a\\u0000b'
 */
export function storable(value: string): string {
  const text = value.includes(NUL) ? value.replaceAll(NUL, NUL_ESCAPE) : value;
  return (text as unknown as WellFormed).isWellFormed() ? text : (text as unknown as WellFormed).toWellFormed();
}

/**
 * Cuts a string to `max` characters (UTF-16 units, never splitting a surrogate pair),
 * after making it {@link storable}. Values that are not strings are turned into strings.
 */
export function bound(value: string, max: number): string;
export function bound(value: string | undefined | null, max: number): string | undefined;
export function bound(value: string | undefined | null, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  let text = typeof value === 'string' ? value : String(value);
  // Cut before cleaning (a huge string costs no more than its kept part), and again after (escapes are longer).
  if (text.length > max) text = text.slice(0, cutPoint(text, max));
  text = storable(text);
  return text.length > max ? text.slice(0, cutPoint(text, max)) : text;
}

/**
 * An id as an id column of `max` characters stores it, and as a search by that id is
 * compared with the column: {@link storable}, and when that is longer than `max`, cut
 * with a marker naming how much was cut and a digest of the whole id
 * (`head…[truncated N chars; sha256 <16 hex>]`, `max` characters at most), so that the
 * id the application gave finds its events and two long ids sharing their first
 * characters stay apart. Applying it to its own output, or to `storable(value)`, gives
 * the same.
 *
 * @example storedId('doc\u00001') // 'doc\\u00001'
 */
export function storedId(value: string, max = MAX_ID_LENGTH): string {
  // The digest is of the storable whole: an id made storable first (as a journal entry holds it) is stored the same.
  const text = storable(value);
  return text.length > max ? truncated(text, max) : text;
}

/**
 * Turns a value into plain JSON data that every supported database stores: dates as
 * ISO strings, bigints and decimals as strings, buffers summarised, functions and
 * symbols dropped, strings and keys made {@link storable}, strings longer than
 * {@link MAX_JSON_STRING} (keys: {@link MAX_JSON_KEY}) cut with a marker naming how much
 * was cut and a digest of the whole, containers deeper than {@link MAX_JSON_DEPTH}
 * replaced by `"[Depth]"`, cycles by `"[Circular]"`, and values whose getters or
 * `toJSON` throw by `"[Unreadable]"`. It never throws, whatever the input.
 *
 * `nestedIn` is the number of arrays and objects the value will sit inside in its stored
 * document: the value keeps `MAX_JSON_DEPTH - nestedIn` levels, so that the whole
 * document stays within {@link MAX_JSON_DEPTH}.
 *
 * Applying it to its own output (with the same `nestedIn`, or a smaller one) changes nothing.
 */
export function toJsonSafe(value: unknown, nestedIn = 0): unknown {
  return typeof value === 'object' && value !== null ? walk(value, nestedIn, new Set(), undefined) : scalar(value);
}

/**
 * {@link toJsonSafe} (`nestedIn` as there), and each value under an object key for which
 * `isSecret` (given the key as stored) is true replaced by {@link REDACTED}: the same as
 * redacting the safe value afterwards, in one walk.
 */
export function toRedactedJsonSafe(value: unknown, isSecret: (key: string) => boolean, nestedIn = 0): unknown {
  return typeof value === 'object' && value !== null ? walk(value, nestedIn, new Set(), isSecret) : scalar(value);
}

/** Decides, by its (storable) name, whether a key's value is masked. */
type SecretKeys = ((key: string) => boolean) | undefined;

/** A value that is not an object, as JSON data; `undefined` for what JSON drops. */
function scalar(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
      return value.length > MAX_JSON_STRING ? truncated(value, MAX_JSON_STRING) : storable(value);
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'bigint':
      return value.toString();
    case 'undefined':
      return null;
    case 'function':
    case 'symbol':
      return undefined;
  }
  return null;
}

function walk(value: unknown, depth: number, ancestors: Set<object>, secret: SecretKeys): unknown {
  if (typeof value !== 'object' || value === null) return scalar(value);
  try {
    const prototype: unknown = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== Array.prototype && prototype !== null) {
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `[binary ${value.byteLength} bytes]`;
      if (value instanceof String || value instanceof Number || value instanceof Boolean) return scalar(value.valueOf());
    }
    if (ancestors.has(value)) return CIRCULAR_MARKER;
    if (depth >= MAX_JSON_DEPTH) return DEPTH_MARKER;
    ancestors.add(value);
    try {
      return container(value, depth, ancestors, secret);
    } finally {
      ancestors.delete(value);
    }
  } catch {
    return UNREADABLE_MARKER;
  }
}

/** An array, an object with `toJSON`, a map, a set or an object, with its items made safe. */
function container(object: object, depth: number, ancestors: Set<object>, secret: SecretKeys): unknown {
  if (Array.isArray(object)) return object.map((item) => walk(item, depth + 1, ancestors, secret) ?? null);
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function') {
    // One level deeper, so that a chain of objects made by toJSON stays bounded too.
    return walk((object as { toJSON(): unknown }).toJSON(), depth + 1, ancestors, secret);
  }
  if (object instanceof Map) return walk(Object.fromEntries(object), depth, ancestors, secret);
  if (object instanceof Set) return walk([...object], depth, ancestors, secret);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(object)) {
    let safe = walk(item, depth + 1, ancestors, secret);
    if (safe === undefined) continue;
    const safeKey = key.length > MAX_JSON_KEY ? truncated(key, MAX_JSON_KEY) : storable(key);
    if (secret?.(safeKey)) safe = REDACTED;
    // An own "__proto__" key is data, not the object's prototype.
    if (safeKey === '__proto__') Object.defineProperty(out, safeKey, { value: safe, enumerable: true, writable: true, configurable: true });
    else out[safeKey] = safe;
  }
  return out;
}

/** `text` cut so that, with the marker, it fits `max` characters; the marker names the cut and the whole's digest. */
function truncated(text: string, max: number): string {
  const room = max - MARKER_ROOM;
  const end = cutPoint(text, room);
  let head = storable(text.slice(0, end));
  if (head.length > room) head = head.slice(0, cutPoint(head, room));
  const digest = createHash('sha256').update(text).digest('hex').slice(0, 16);
  return `${head}…[truncated ${text.length - end} chars; sha256 ${digest}]`;
}

/** The largest cut at or below `max` that does not split a surrogate pair. */
function cutPoint(text: string, max: number): number {
  if (max <= 0) return 0;
  const last = text.charCodeAt(max - 1);
  return last >= 0xd800 && last <= 0xdbff ? max - 1 : max;
}
