// integrity.verificationKeys is an option like the others: a bad value stops start-up with
// InvalidAuditOptionsError naming it. A verification key that is neither a verifier key
// string nor an Ed25519 public key, accepted, made every verify() report the checkpoints the
// configured signing key signed as `bad-signature`.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidAuditOptionsError } from '../../lib/index.js';
import { resolveAuditOptions } from '../../lib/options/audit-options.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.test/verification-keys';
const { privateKey } = generateKeyPairSync('ed25519');
const { publicKey: oldPublicKey } = generateKeyPairSync('ed25519');

describe('integrity.verificationKeys read at start-up', () => {
  it.each<[string, string]>([
    ['a text that is no verifier key', 'audit.test/old-key'],
    ['a PEM block that holds no key', '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAzzzz\n-----END PUBLIC KEY-----\n'],
  ])('%s stops start-up with InvalidAuditOptionsError naming integrity.verificationKeys', (_name, key) => {
    const resolve = () => resolveAuditOptions({ integrity: { signingKey: privateKey, origin: ORIGIN, verificationKeys: [key] } });
    expect(resolve).toThrow(InvalidAuditOptionsError);
    expect(resolve).toThrow(/"integrity\.verificationKeys": item 0 is not an Ed25519 public key/);
  });

  it('a key of another kind (an RSA public key) is refused the same way', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => resolveAuditOptions({ integrity: { signingKey: privateKey, origin: ORIGIN, verificationKeys: [oldPublicKey, publicKey] } })).toThrow(/"integrity\.verificationKeys": item 1 /);
  });
});

describe.each(databases())('integrity.verificationKeys on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    t = undefined;
    await db?.drop();
    db = undefined;
  });

  async function start(verificationKeys: unknown[]): Promise<TestApp> {
    db = await createTestDatabase(kind);
    return (t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, verificationKeys: verificationKeys as never } } }));
  }

  it('a valid earlier public key is accepted, and verify() is ok', async () => {
    const started = await start([oldPublicKey]);
    await started.audit.log({ action: 'order.noted', reason: 'one' });
    await started.audit.checkpoint();
    expect(await started.audit.verify()).toMatchObject({ ok: true, problems: [] });
  });
});
