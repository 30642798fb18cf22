import { describe } from '../read/audit-query.js';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';
import type { AuditCheckpoint, AuditPublicKey } from '../interfaces/audit-integrity.interface.js';
import { createSigner, escapedPemProblem, parseVerifierKey, toPublicKey, type NoteSigner } from './checkpoint-note.js';

/** `integrity` with its defaults applied and its key loaded. */
export interface ResolvedIntegrity {
  signer: NoteSigner;
  origin: string;
  checkpointEvents: number;
  checkpointMs: number;
  anchor: ((checkpoint: AuditCheckpoint) => void | Promise<void>) | undefined;
  /** The signing key's public half, then `verificationKeys`. */
  publicKeys: AuditPublicKey[];
  sequenceEvery: number;
}

const KNOWN = new Set(['signingKey', 'origin', 'keyName', 'checkpointEvery', 'anchor', 'verificationKeys', 'sequenceEvery']);
const DEFAULT_CHECKPOINT_EVENTS = 10_000;
const DEFAULT_CHECKPOINT_MS = 10_000;
export const DEFAULT_SEQUENCE_EVERY = 1_000;

const fail = (field: string, problem: string): never => {
  throw new InvalidAuditOptionsError(`integrity.${field}`, problem);
};

/** Validates `integrity` and loads its signing key; `undefined` when the option is not given. */
export function resolveIntegrity(value: unknown): ResolvedIntegrity | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidAuditOptionsError('integrity', 'must be an object { signingKey, origin, checkpointEvery?, anchor? }');
  }
  const raw = value as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!KNOWN.has(key)) fail(key, `is not an integrity option (known: ${[...KNOWN].join(', ')})`);
  }

  const origin = raw['origin'];
  if (typeof origin !== 'string' || origin.trim() === '' || [...origin].some((c) => c < ' ' || c === '\u007f')) {
    fail('origin', `must be a non-empty one-line text naming the log, e.g. "audit.example.com/orders", got ${JSON.stringify(origin)}`);
  }
  const keyName = raw['keyName'] ?? origin;
  if (typeof keyName !== 'string' || keyName === '' || /[\s+]/.test(keyName)) {
    if (raw['keyName'] === undefined) {
      // The origin names the signing key unless keyName does: say which one to change.
      fail('origin', `names the signing key when keyName is not given, and a key name has no spaces or "+": got ${JSON.stringify(origin)}; pass keyName (e.g. "audit.example.com-orders") or an origin without them`);
    }
    fail('keyName', `must be a key name without spaces or "+", got ${JSON.stringify(keyName)}`);
  }

  let signer: NoteSigner | undefined;
  const signingKey = raw['signingKey'];
  if (signingKey === undefined) fail('signingKey', 'is required: an Ed25519 private key (KeyObject or PKCS#8 PEM)');
  const escaped = typeof signingKey === 'string' ? escapedPemProblem(signingKey) : undefined;
  if (escaped) fail('signingKey', escaped);
  try {
    const key = typeof signingKey === 'string' ? createPrivateKey(signingKey) : (signingKey as KeyObject);
    if (!key || typeof key !== 'object' || (key as KeyObject).type !== 'private') throw new Error('not a private key');
    if ((key as KeyObject).asymmetricKeyType !== 'ed25519') throw new Error(`a ${(key as KeyObject).asymmetricKeyType} key, not Ed25519`);
    signer = createSigner(keyName as string, key);
  } catch (error) {
    fail('signingKey', `must be an Ed25519 private key (KeyObject or PKCS#8 PEM): ${(error as Error).message}`);
  }

  const every = raw['checkpointEvery'] ?? {};
  if (every === null || typeof every !== 'object' || Array.isArray(every)) fail('checkpointEvery', 'must be an object { events?, ms? }');
  const everyRaw = every as Record<string, unknown>;
  for (const key of Object.keys(everyRaw)) {
    if (key !== 'events' && key !== 'ms') fail('checkpointEvery', `has no "${key}" (known: events, ms)`);
  }
  const wholeNumber = (field: string, v: unknown, fallback: number, min: number, max: number): number => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(field, `must be a whole number from ${min} to ${max}, got ${describe(v)}`);
    return v as number;
  };
  const checkpointEvents = wholeNumber('checkpointEvery.events', everyRaw['events'], DEFAULT_CHECKPOINT_EVENTS, 1, 100_000_000);
  const checkpointMs = wholeNumber('checkpointEvery.ms', everyRaw['ms'], DEFAULT_CHECKPOINT_MS, 100, 31 * 86_400_000);

  const anchor = raw['anchor'];
  if (anchor !== undefined && typeof anchor !== 'function') fail('anchor', 'must be a function (checkpoint) => Promise<void>');

  const verificationKeys = raw['verificationKeys'] ?? [];
  if (!Array.isArray(verificationKeys) || verificationKeys.some((key) => typeof key !== 'string' && (key === null || typeof key !== 'object'))) {
    fail('verificationKeys', 'must be an array of public keys (KeyObject, PEM or verifier key string)');
  }
  // Each one read now: a key that cannot be read would otherwise only show at verify(), as
  // every checkpoint's signature failing.
  (verificationKeys as Array<KeyObject | string>).forEach((key, index) => {
    const escaped = typeof key === 'string' ? escapedPemProblem(key) : undefined;
    if (escaped) fail('verificationKeys', `item ${index} ${escaped}`);
    try {
      if (typeof key === 'string' && !key.trimStart().startsWith('-----BEGIN')) parseVerifierKey(key.trim());
      else toPublicKey(key);
    } catch (error) {
      fail('verificationKeys', `item ${index} is not an Ed25519 public key (KeyObject, PEM or verifier key string): ${(error as Error).message}`);
    }
  });

  const sequenceEvery = wholeNumber('sequenceEvery', raw['sequenceEvery'], DEFAULT_SEQUENCE_EVERY, 10, 60_000);

  return {
    signer: signer!,
    origin: origin as string,
    checkpointEvents,
    checkpointMs,
    anchor: anchor as ResolvedIntegrity['anchor'],
    publicKeys: [signer!.publicKey, ...(verificationKeys as AuditPublicKey[])],
    sequenceEvery,
  };
}
