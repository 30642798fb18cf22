import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { RECEIPT, SentThenThrowController } from '../app/hostile-sent-then-throw.controller.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

describe.each(combos)('an @Res() handler that throws after answering, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [SentThenThrowController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the client gets the answer the handler gave, intact', async () => {
    const response = await t.request('/hostile/sent-then-throw', { method: 'POST', signal: AbortSignal.timeout(5_000) });
    const text = await response.text();
    expect({ status: response.status, body: text }).toEqual({ status: 201, body: JSON.stringify(RECEIPT) });
  });
});
