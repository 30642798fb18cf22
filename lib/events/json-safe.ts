/**
 * Turns a value into plain JSON data: dates as ISO strings, bigints and decimals as
 * strings, buffers summarised, functions and symbols dropped, cycles cut.
 */
export function toJsonSafe(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  switch (typeof value) {
    case 'string':
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
  if (value === null) return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `[binary ${value.byteLength} bytes]`;
  const object = value as object;
  if (seen.has(object)) return '[Circular]';
  seen.add(object);
  try {
    if (Array.isArray(object)) return object.map((item) => toJsonSafe(item, seen) ?? null);
    if (typeof (object as { toJSON?: unknown }).toJSON === 'function') {
      return toJsonSafe((object as { toJSON(): unknown }).toJSON(), seen);
    }
    if (object instanceof Map) return toJsonSafe(Object.fromEntries(object), seen);
    if (object instanceof Set) return toJsonSafe([...object], seen);
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(object)) {
      const safe = toJsonSafe(item, seen);
      if (safe !== undefined) out[key] = safe;
    }
    return out;
  } finally {
    seen.delete(object);
  }
}

/** Cuts a string to `max` characters. */
export function bound(value: string | undefined | null, max: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  return value.length > max ? value.slice(0, max) : value;
}
