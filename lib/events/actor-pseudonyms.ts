import { createHmac, KeyObject } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import type { AuditPseudonymKey, AuditPseudonymKeyFunction } from '../interfaces/audit-module-options.interface.js';
import { bound, storedId } from './json-safe.js';
import { PSEUDONYM_PREFIX } from './pseudonym-prefix.js';

export { PSEUDONYM_PREFIX };

/** The smallest pseudonymisation key accepted, in bytes. */
export const MIN_PSEUDONYM_KEY_BYTES = 32;

/** An actor as it is stored: with pseudonymisation on, its id a pseudonym, or none when its key is gone. */
export interface StoredActor extends AuditActor {
  /** The actor had an id, but no key to pseudonymise it (erased): no id is stored. */
  erased?: true;
}

/** Actors already made fit for storage: passed through as they are (never pseudonymised twice). */
const storedActors = new WeakSet<object>();

const mark = (actor: StoredActor): StoredActor => {
  storedActors.add(actor);
  return actor;
};

/** The actor type as `audit_log.actor_type` stores it. */
export const storedActorType = (type: string): string => bound(type, 64) || 'anonymous';

/**
 * A key as HMAC takes it, or what is wrong with it (never the key's value): a `Buffer`
 * (or other `Uint8Array`), a secret `KeyObject`, or a base64 / base64url string; at least
 * {@link MIN_PSEUDONYM_KEY_BYTES} bytes in each case.
 */
export function hmacKey(key: unknown): { key: Buffer | KeyObject } | { problem: string } {
  const tooShort = (bytes: number) => ({ problem: `must be at least ${MIN_PSEUDONYM_KEY_BYTES} bytes, got ${bytes}` });
  if (key instanceof KeyObject) {
    if (key.type !== 'secret') return { problem: `must be a secret KeyObject (createSecretKey), got a ${key.type} key` };
    const size = key.symmetricKeySize ?? 0;
    return size < MIN_PSEUDONYM_KEY_BYTES ? tooShort(size) : { key };
  }
  if (key instanceof Uint8Array) {
    return key.byteLength < MIN_PSEUDONYM_KEY_BYTES ? tooShort(key.byteLength) : { key: Buffer.from(key) };
  }
  if (typeof key === 'string') {
    if (/^[0-9a-fA-F]+$/.test(key)) {
      return { problem: "is a string of hexadecimal digits; a string key is read as base64: pass Buffer.from(key, 'hex') for a hex key" };
    }
    const unpadded = key.replace(/=+$/, '');
    if (!/^[A-Za-z0-9+/_-]+$/.test(unpadded) || (/[+/]/.test(unpadded) && /[_-]/.test(unpadded))) {
      return { problem: 'a string key must be base64 or base64url (openssl rand -base64 32)' };
    }
    const bytes = Buffer.from(unpadded.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.toString('base64').replace(/=+$/, '') !== unpadded.replace(/-/g, '+').replace(/_/g, '/')) {
      return { problem: 'a string key must be base64 or base64url (its length or last character is not)' };
    }
    return bytes.length < MIN_PSEUDONYM_KEY_BYTES ? tooShort(bytes.length) : { key: bytes };
  }
  return { problem: `must be a Buffer, a secret KeyObject or a base64 string, got ${key === null ? 'null' : typeof key}` };
}

/**
 * Replaces actor ids by keyed pseudonyms: `hmac:` + base64url(HMAC-SHA-256(key,
 * `${type}:${id}`)), 48 characters. With a key function, the key is asked for each
 * actor each time (never cached): once it gives none, that actor's id maps to nothing.
 */
export class ActorPseudonymizer {
  private readonly logger = new Logger('Audit');

  constructor(
    private readonly key: Buffer | KeyObject | AuditPseudonymKeyFunction,
    /** Keep `actor.display` (dropped otherwise). */
    readonly keepDisplay: boolean,
  ) {}

  /** The one key of every actor (`undefined` with a key per actor). */
  get sharedKey(): Buffer | KeyObject | undefined {
    return typeof this.key === 'function' ? undefined : this.key;
  }

  /**
   * The pseudonym of the actor `type` / `id`, or `null` when its key is gone: the key
   * function threw, gave nothing, or gave an unusable key (logged).
   */
  pseudonym(type: string, id: string): string | null {
    const storedType = storedActorType(type);
    const key = this.keyOf(storedType, id);
    if (!key) return null;
    return PSEUDONYM_PREFIX + createHmac('sha256', key).update(`${storedType}:${id}`, 'utf8').digest('base64url');
  }

  /** The actor as stored: its id pseudonymised (none when erased), its display dropped unless kept. */
  storedActor(actor: AuditActor): StoredActor {
    const type = storedActorType(actor.type);
    const display = this.keepDisplay && actor.display !== undefined ? { display: actor.display } : {};
    if (actor.id === undefined || actor.id === null) return mark({ type, ...display });
    const id = this.pseudonym(type, String(actor.id));
    // A person erased is erased whole: no display either.
    return mark(id === null ? { type, erased: true } : { type, id, ...display });
  }

  private keyOf(type: string, id: string): Buffer | KeyObject | undefined {
    if (typeof this.key !== 'function') return this.key;
    let given: AuditPseudonymKey | null | undefined;
    try {
      given = this.key({ type, id });
    } catch (error) {
      this.logger.error(`Audit: the pseudonymisation key function threw for an actor of type "${type}"; its id is not stored (actorErased): ${String(error)}`);
      return undefined;
    }
    if (given === undefined || given === null) return undefined; // the key is destroyed: erased
    const checked = hmacKey(given);
    if ('problem' in checked) {
      this.logger.error(`Audit: the pseudonymisation key function gave an unusable key for an actor of type "${type}" (it ${checked.problem}); its id is not stored (actorErased)`);
      return undefined;
    }
    return checked.key;
  }
}

/**
 * The one way an actor becomes stored data (an `audit_log` row, a journal entry): with
 * pseudonymisation on, its id replaced by its pseudonym and its display dropped unless
 * kept; an actor already made fit for storage is passed through.
 */
export function actorForStorage(actor: AuditActor, pseudonymizer: ActorPseudonymizer | undefined): StoredActor {
  if (storedActors.has(actor) || !pseudonymizer) return actor;
  return pseudonymizer.storedActor(actor);
}

/** An actor as a journal entry keeps it: flagged when already pseudonymised, so that recovery stores it as it is. */
export interface JournalActor extends AuditActor {
  pseudonymised?: true;
  erased?: true;
}

/** The journal's form of an actor fit for storage: its id as `audit_log.actor_id` stores it (a long one cut, as recovery stores it). */
export function journalActor(actor: StoredActor): JournalActor {
  return {
    type: actor.type,
    // An actor resolver may give a number (or null) whatever the type says.
    ...(actor.id !== undefined && actor.id !== null ? { id: storedId(String(actor.id)) } : {}),
    ...(actor.display !== undefined ? { display: actor.display } : {}),
    ...(storedActors.has(actor) ? { pseudonymised: true as const } : {}),
    ...(actor.erased ? { erased: true as const } : {}),
  };
}

/** An actor read back from a journal entry: one pseudonymised when journaled is stored as it is. */
export function actorFromJournal(actor: JournalActor): StoredActor {
  const { pseudonymised, erased, ...rest } = actor;
  if (!pseudonymised) return rest;
  return mark({ ...rest, ...(erased ? { erased } : {}) });
}
