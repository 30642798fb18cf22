import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';

/** `retention` with its defaults applied, durations in milliseconds. */
export interface ResolvedRetention {
  maxAge: number;
  schedule: number;
}

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DEFAULT_SCHEDULE = 3_600_000;
const MIN_MAX_AGE = 1_000;
const MIN_SCHEDULE = 100;
const MAX_DURATION = 100 * 365 * 86_400_000;

/**
 * A duration: milliseconds, or text such as `'400d'`, `'12h'`, `'30m'`, `'45s'`, `'500ms'`.
 * @throws InvalidAuditOptionsError naming `field` when it is neither.
 */
export function parseDuration(field: string, value: unknown, min: number): number {
  let ms: number | undefined;
  if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
    if (match) ms = Number(match[1]) * UNITS[match[2]!]!;
  }
  if (ms === undefined || !Number.isFinite(ms) || ms < min || ms > MAX_DURATION) {
    throw new InvalidAuditOptionsError(
      field,
      `must be a duration of at least ${min} ms: milliseconds, or text such as "400d", "12h", "30m" or "45s"; got ${JSON.stringify(value)}`,
    );
  }
  return Math.round(ms);
}

/** Validates `retention`; `undefined` when the option is not given. */
export function resolveRetention(value: unknown): ResolvedRetention | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidAuditOptionsError('retention', 'must be an object such as { maxAge: "400d", schedule: "1h" }');
  }
  const raw = value as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (key !== 'maxAge' && key !== 'schedule') throw new InvalidAuditOptionsError(`retention.${key}`, 'is not a retention option (known: maxAge, schedule)');
  }
  if (raw['maxAge'] === undefined) throw new InvalidAuditOptionsError('retention.maxAge', 'is required: how long events are kept, e.g. "400d"');
  return {
    maxAge: parseDuration('retention.maxAge', raw['maxAge'], MIN_MAX_AGE),
    schedule: raw['schedule'] === undefined ? DEFAULT_SCHEDULE : parseDuration('retention.schedule', raw['schedule'], MIN_SCHEDULE),
  };
}
