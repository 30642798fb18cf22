import type { AuditChange, AuditFieldChange, AuditRelationChange } from '../interfaces/audit-event.interface.js';

/** Bytes of `value` as JSON. */
export const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? '');

/**
 * Splits `items` into consecutive chunks of at most `maxCount` items whose `size` stays
 * within `maxBytes` (a single item larger than that is a chunk of its own).
 */
export function chunkBy<T>(items: readonly T[], maxCount: number, maxBytes: number, size: (chunk: readonly T[]) => number): T[][] {
  const chunks: T[][] = [];
  const push = (chunk: T[]): void => {
    if (chunk.length > 1 && size(chunk) > maxBytes) {
      const half = Math.ceil(chunk.length / 2);
      push(chunk.slice(0, half));
      push(chunk.slice(half));
    } else if (chunk.length > 0) {
      chunks.push(chunk);
    }
  };
  for (let start = 0; start < items.length; start += maxCount) push(items.slice(start, start + maxCount));
  if (items.length === 0) chunks.push([]);
  return chunks;
}

const TOO_LARGE = (bytes: number): string => `[too large: ${bytes} bytes]`;
const TOO_LARGE_PATTERN = /^\[too large: \d+ bytes\]$/;

/** Whether `value` is the marker {@link shrinkChange} puts in place of a value too large to keep. */
export const isSizeMarker = (value: string): boolean => value.startsWith('[too large: ') && TOO_LARGE_PATTERN.test(value);

/**
 * A change whose JSON is larger than `maxBytes`: its largest field values are replaced by
 * a marker naming their size until it fits, and it is marked `partial` (which fields
 * changed stays known; their values are not).
 */
export function shrinkChange(change: AuditChange, maxBytes: number): AuditChange {
  if (jsonBytes(change) <= maxBytes) return change;
  const fields: Record<string, AuditFieldChange | AuditRelationChange> = { ...change.fields };
  const bySize = Object.entries(fields)
    .map(([name, value]) => [name, jsonBytes(value)] as const)
    .sort((a, b) => b[1] - a[1]);
  for (const [name] of bySize) {
    const value = fields[name]!;
    fields[name] =
      'added' in value
        ? { added: [TOO_LARGE(jsonBytes(value.added))], removed: [TOO_LARGE(jsonBytes(value.removed))] }
        : {
            ...('from' in value ? { from: TOO_LARGE(jsonBytes(value.from)) } : {}),
            ...('to' in value ? { to: TOO_LARGE(jsonBytes(value.to)) } : {}),
          };
    const shrunk: AuditChange = { ...change, fields: { ...fields }, partial: true };
    if (jsonBytes(shrunk) <= maxBytes) return shrunk;
  }
  return {
    entity: change.entity,
    id: change.id,
    operation: change.operation,
    fields: {},
    partial: true,
    ...(change.count !== undefined ? { count: change.count } : {}),
  };
}
