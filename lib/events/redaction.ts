export const REDACTED = '[REDACTED]';

/** Names masked wherever they occur as a key (compared without case, `_` or `-`). */
export const DEFAULT_REDACTED_FIELDS: readonly string[] = [
  'authorization',
  'cookie',
  'setCookie',
  'cvv',
  'cvc',
  'pin',
  'ssn',
  'otp',
];

/** Name fragments that mark a key as secret wherever they occur in it. */
const SECRET_FRAGMENTS: readonly string[] = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'privatekey',
  'credential',
  'creditcard',
  'cardnumber',
];

/** A name as the rules compare it: lower case, without `_` or `-`. */
export const normaliseName = (name: string): string => name.toLowerCase().replace(/[_-]/g, '');
const normalise = normaliseName;

/** Decides which keys are masked. One per module, built from the `redact` option. */
export class Redactor {
  private readonly exact: Set<string>;

  constructor(extra: readonly string[] = []) {
    this.exact = new Set([...DEFAULT_REDACTED_FIELDS, ...extra].map(normalise));
  }

  isSecret(key: string): boolean {
    const name = normalise(key);
    return this.exact.has(name) || SECRET_FRAGMENTS.some((fragment) => name.includes(fragment));
  }

  /** A deep copy of `value` with every secret key's value masked. */
  redact<T>(value: T): T {
    return this.walk(value, new WeakSet()) as T;
  }

  private walk(value: unknown, seen: WeakSet<object>): unknown {
    if (value === null || typeof value !== 'object') return value;
    if (seen.has(value)) return '[Circular]';
    seen.add(value);
    try {
      if (Array.isArray(value)) return value.map((item) => this.walk(item, seen));
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) {
        out[key] = this.isSecret(key) ? REDACTED : this.walk(item, seen);
      }
      return out;
    } finally {
      seen.delete(value);
    }
  }
}
