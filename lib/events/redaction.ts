import { REDACTED, toRedactedJsonSafe } from './json-safe.js';

export { REDACTED };

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

/** Keys whose decision is kept, at most, and the longest such key. */
const MAX_DECIDED_KEYS = 10_000;
const MAX_DECIDED_KEY_LENGTH = 128;

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
    let secret = this.decided.get(key);
    if (secret === undefined) {
      const name = normalise(key);
      secret = this.exact.has(name) || SECRET_FRAGMENTS.some((fragment) => name.includes(fragment));
      // Keys repeat from event to event: decided once each, up to a bound (then recomputed).
      if (this.decided.size < MAX_DECIDED_KEYS && key.length <= MAX_DECIDED_KEY_LENGTH) this.decided.set(key, secret);
    }
    return secret;
  }

  /** Keys already decided: secret or not. */
  private readonly decided = new Map<string, boolean>();

  /**
   * `value` made JSON-safe (as `toJsonSafe` makes it, `nestedIn` as there) with every
   * secret key's value masked, in one walk.
   */
  safe(value: unknown, nestedIn = 0): unknown {
    return toRedactedJsonSafe(value, this.secret, nestedIn);
  }

  private readonly secret = (key: string): boolean => this.isSecret(key);
}
