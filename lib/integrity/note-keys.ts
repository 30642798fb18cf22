import { createPublicKey, KeyObject } from 'node:crypto';
import type { AuditPublicKey } from '../interfaces/audit-integrity.interface.js';
import { createVerifier, parseVerifierKey, type NoteVerifier } from './checkpoint-note.js';

/** The key names of a signed note's signature lines. */
export function signatureKeyNames(note: string): string[] {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return [];
  const names = new Set<string>();
  for (const line of note.slice(split + 2).split('\n')) {
    const match = /^\u2014 (\S+) /.exec(line);
    if (match) names.add(match[1]!);
  }
  return [...names];
}

/**
 * Verifiers for a note from public keys: a verifier key string names its key; a PEM text
 * or `KeyObject` (public, or private for its public half) has no name, so it is tried
 * under each key name the note's signature lines give.
 */
export function verifiersFor(note: string, keys: readonly AuditPublicKey[]): NoteVerifier[] {
  const names = signatureKeyNames(note);
  const verifiers: NoteVerifier[] = [];
  for (const key of keys) {
    if (typeof key === 'string' && !key.includes('-----BEGIN')) {
      verifiers.push(parseVerifierKey(key.trim()));
      continue;
    }
    const publicKey = key instanceof KeyObject ? (key.type === 'private' ? createPublicKey(key) : key) : createPublicKey(key);
    for (const name of names) {
      try {
        verifiers.push(createVerifier(name, publicKey));
      } catch {
        // Not a valid key name: no key of ours signs under it.
      }
    }
  }
  return verifiers;
}
