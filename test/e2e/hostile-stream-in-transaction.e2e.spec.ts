import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { EXPORT_LINES, HostileExportController } from '../app/hostile-export.controller.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));

/**
 * A handler that streams its response from inside a transaction and waits for the
 * response to finish before committing. Holding the response's end until the unit is
 * stored, while the unit waits for that very transaction, must not hang the request
 * (and the connection and locks it holds) forever.
 */
describe.each(combos)('a response streamed from inside a transaction on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [HostileExportController] });
  });
  afterAll(async () => {
    // Bounded: Fastify's close waits for a connection its client abandoned (with or without this module).
    await Promise.race([t?.close(), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    await db?.drop().catch(() => undefined);
  });

  it('the request ends within seconds, and the trail agrees with the database', async () => {
    let outcome: string;
    try {
      const response = await t.request('/hostile/export', { method: 'POST', signal: AbortSignal.timeout(5_000) });
      outcome = `${response.status} ${await response.text()}`;
    } catch (error) {
      outcome = (error as Error).name;
    }
    expect(outcome, 'the request did not hang').not.toBe('TimeoutError');
    if (outcome.startsWith('200')) expect(outcome).toBe(`200 ${EXPORT_LINES.join('')}`);

    // Whatever the answer was: a committed change has its record, a rolled-back one has none.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const committed = await t.dataSource.getRepository(Order).countBy({ note: 'export-run' });
    const recorded = (await t.rows()).filter((row) => row.changes?.some((change) => change.entity === 'Order')).length;
    expect([committed, recorded]).toEqual([committed, committed]);
  });
});
