// The app of the tests of transactions ended by hand: the commit-point steps route on a
// database of its own, emptied of orders and audit rows before each test.
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { CommitPointSteps, CommitPointStepsController, type StepsResult } from '../app/commit-point-steps.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/** What a request of steps did, with its request id. */
export type StepsRequest = (steps: string[]) => Promise<StepsResult & { requestId: string }>;

/**
 * Starts the app for the enclosing `describe` (`started` is given it, before the tests) and
 * returns a function that runs steps in a request of alice's, checking that it answered 201.
 */
export function commitPointApp(kind: TestDatabase['kind'], prefix: string, started: (app: TestApp) => void | Promise<void>): StepsRequest {
  let db: TestDatabase;
  let t: TestApp | undefined;
  let requestCount = 0;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', controllers: [CommitPointStepsController], providers: [CommitPointSteps] });
    await started(t);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t!.dataSource.getRepository(Order).clear();
    await t!.clearAudit();
  });
  return async (steps) => {
    const requestId = `${prefix}-${kind}-${++requestCount}`;
    const response = await t!.request('/commit-point-steps', {
      method: 'POST',
      json: { steps },
      headers: { authorization: 'Bearer alice-token', 'x-request-id': requestId },
    });
    const body = (await response.json()) as StepsResult & { message?: string };
    expect([response.status, body.message]).toEqual([201, undefined]);
    return { ...body, requestId };
  };
}
