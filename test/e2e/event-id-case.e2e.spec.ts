// An event id is a UUID, the same id in either case: prove() finds the event by it, as the
// viewer's event page does.
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/chk-id-case';
const { privateKey } = generateKeyPairSync('ed25519');

describe.each(databases())('event ids in upper case on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    await t.audit.log({ action: 'order.noted', reason: 'note', target: { type: 'order', id: '1' } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('prove() takes the id in upper case', async () => {
    const id = (await t.rows())[0]!.id;
    const proof = await t.audit.prove(id.toUpperCase());
    expect(proof.id).toBe(id);
  });
});
