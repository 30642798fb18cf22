import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

// Events without a seq are not in the tree, so verify cannot check them: it says how many
// there are instead of an unqualified OK (a log kept while integrity was off has only those).
describe.each(databases())('verify of events without a seq on %s', (kind) => {
  const dir = mkdtempSync(join(tmpdir(), 'audit-unsequenced-'));
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyFile = join(dir, 'audit.pem');
  writeFileSync(keyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  let db: TestDatabase;
  let url: string[];
  let app: TestApp | undefined;

  beforeAll(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, 'audit.sqlite')));
  });
  afterAll(async () => {
    await app?.close();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a log kept without integrity: OK over nothing, and the events it did not check, counted', async () => {
    app = await createTestApp({ db, adapter: 'express' });
    for (const id of ['1', '2', '3']) await app.audit.log({ action: 'note.added', target: { type: 'note', id } });
    await app.close();
    app = undefined;
    const run = await cli('verify', ...url, '--public-key', keyFile);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(
      'OK: tree size 0, 0 events and 0 checkpoints checked; 3 events without a seq, not checked (the integrator\'s backlog, or stored while integrity was off)',
    );
  });

  it("verify() counts them as unsequenced until the integrator gives them a seq; then they are checked", async () => {
    app = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: 'audit.test/unsequenced', sequenceEvery: 60_000 } } });
    await app.audit.log({ action: 'note.added', target: { type: 'note', id: '4' } });
    const before = await app.audit.verify();
    expect(before.ok).toBe(true);
    expect(before.problems).toEqual([]);
    expect(before.unsequenced).toBeGreaterThanOrEqual(1);
    expect(before.unsequenced! + before.events).toBe(4);
    await app.audit.checkpoint();
    const after = await app.audit.verify();
    expect(after).toMatchObject({ ok: true, treeSize: 4, events: 4, problems: [] });
    expect(after.unsequenced).toBeUndefined();
    const run = await cli('verify', ...url, '--public-key', keyFile);
    expect(run.stdout.trim()).toBe('OK: tree size 4, 4 events and 1 checkpoint checked');
    expect(run.code).toBe(0);
  });
});
