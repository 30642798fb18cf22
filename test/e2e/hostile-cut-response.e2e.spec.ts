import { get as httpGet } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { CutResponseController } from '../app/hostile-cut-response.controller.js';
import { complete } from '../support/response-completion.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));


describe.each(combos)('a response the server cuts short after its headers, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter, controllers: [CutResponseController] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  /** The rows of the request `requestId`, once its unit is stored. */
  const rowsOf = async (requestId: string) => {
    await expect.poll(async () => (await t.rows()).filter((row) => row.requestId === requestId).length, { timeout: 5_000 }).toBeGreaterThan(0);
    return (await t.rows()).filter((row) => row.requestId === requestId);
  };

  it('a StreamableFile that completes: the client gets the whole file; one success intent claiming the insert', async () => {
    const seen = await complete(t, '/hostile/cut/report', { headers: { 'x-request-id': `cut-ok-${adapter}` } });
    expect(seen).toMatchObject({ kind: 'complete', status: 200 });
    const rows = await rowsOf(`cut-ok-${adapter}`);
    expect(rows.map((row) => [row.kind, row.action, row.outcome, row.error, row.changes?.length])).toEqual([['intent', 'report.exported', 'success', null, 1]]);
  });

  it('a StreamableFile whose stream fails midway: the connection is cut, and the intent is a failure, not a success', async () => {
    const seen = await complete(t, '/hostile/cut/report?fail', { headers: { 'x-request-id': `cut-file-${adapter}` } });
    expect(seen, 'the client saw the file end cleanly').toMatchObject({ kind: 'broken', status: 200 });
    const rows = await rowsOf(`cut-file-${adapter}`);
    expect(rows.map((row) => [row.kind, row.action, row.outcome, row.error, row.changes?.length])).toEqual([
      ['intent', 'report.exported', 'failure', { name: 'ResponseDestroyed' }, 1],
    ]);
  });

  it('an @Res() handler that destroys its response after part of the body: the intent is a failure', async () => {
    const seen = await complete(t, '/hostile/cut/raw', { method: 'POST', headers: { 'x-request-id': `cut-raw-${adapter}` } });
    expect(seen, 'the client saw the body end cleanly').toMatchObject({ kind: 'broken', status: 200 });
    const rows = await rowsOf(`cut-raw-${adapter}`);
    expect(rows.map((row) => [row.kind, row.action, row.outcome, row.error, row.changes?.length])).toEqual([
      ['intent', 'report.written', 'failure', { name: 'ResponseDestroyed' }, 1],
    ]);
  });

  it('a client that goes away mid-file is not the server cutting the response: the intent stays a success', async () => {
    // Its own connection, closed after the first chunk of the body.
    await new Promise<void>((resolve, reject) => {
      const request = httpGet(`${t.url}/hostile/cut/report?chunks=50`, { agent: false, headers: { 'x-request-id': `cut-gone-${adapter}` } }, (response) => {
        response.once('data', () => {
          request.destroy();
          resolve();
        });
      });
      request.on('error', (error) => (request.destroyed ? undefined : reject(error)));
    });
    const rows = await rowsOf(`cut-gone-${adapter}`);
    expect(rows.map((row) => [row.kind, row.action, row.outcome, row.error, row.changes?.length])).toEqual([['intent', 'report.exported', 'success', null, 1]]);
  });
});
