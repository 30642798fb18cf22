import { createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseVerifierKey } from '../integrity/checkpoint-note.js';
import type { AuditPublicKey } from '../interfaces/audit-integrity.interface.js';
import { CliUsageError } from './usage-error.js';

/**
 * The keys of `--public-key` options: each one a file (PEM public or private key, or a
 * verifier key string) or a verifier key string itself (`<name>+<key id>+<base64>`).
 */
export function readPublicKeys(values: readonly string[] | undefined): AuditPublicKey[] {
  if (!values || values.length === 0) throw new CliUsageError('give the key checkpoints are signed with: --public-key <file or verifier key>');
  return values.map(readPublicKey);
}

function readPublicKey(value: string): AuditPublicKey {
  if (existsSync(value)) {
    const text = readFileSync(value, 'utf8').trim();
    if (text.startsWith('-----BEGIN')) {
      let type: string | undefined;
      try {
        type = createPublicKey(text).asymmetricKeyType;
      } catch (err) {
        throw new CliUsageError(`--public-key ${value}: the file is not a PEM key (${(err as Error).message})`);
      }
      if (type !== 'ed25519') throw new CliUsageError(`--public-key ${value}: the key is ${type ?? 'not asymmetric'}, not Ed25519 (checkpoints are signed with Ed25519 keys)`);
      return text;
    }
    return checkVerifierKey(text, `--public-key ${value}: the file holds neither a PEM key nor a verifier key string`);
  }
  return checkVerifierKey(value.trim(), `--public-key ${JSON.stringify(value)} is neither a readable file nor a verifier key string`);
}

function checkVerifierKey(text: string, what: string): string {
  try {
    parseVerifierKey(text);
  } catch (err) {
    throw new CliUsageError(`${what} (${(err as Error).message})`);
  }
  return text;
}
