// `storeTimeout` is counted from the last progress of the store: a unit kept in the journal
// (too many changes to keep in memory) is stored a few journal rows at a time, each part
// restarting its time. Over a slow link its store takes longer than `storeTimeout` in all,
// though no part does: the answer is the handler's, with its whole trail, fail-closed too.
import { Body, Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ImportLine } from '../app/import-line.entity.js';
import { databaseBehindProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const STORE_TIMEOUT = 1_500;
const LATENCY_MS = 40;
const LINES = 800;
let proxy: TcpProxy;

@Controller('slow-import')
class SlowImportController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Inserts the lines (committed), then every round trip to the database slows down. */
  @Post()
  @Audited('lines.imported')
  async import(@Body() body: { batch: string }): Promise<{ batch: string }> {
    await this.dataSource.transaction(async (manager) => {
      for (let start = 0; start < LINES; start += 50) {
        await manager.insert(ImportLine, Array.from({ length: 50 }, (_, i) => ({ batch: body.batch, sku: `sku-${start + i}` })));
      }
    });
    proxy.setLatency(LATENCY_MS);
    return { batch: body.batch };
  }
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('a unit stored in parts over a slow link, longer than storeTimeout in all, on %s (fail-closed)', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    let viaProxy: TestDatabase;
    ({ db, proxy, viaProxy } = await databaseBehindProxy(kind));
    t = await createTestApp({
      db: viaProxy,
      adapter: 'express',
      entities: [ImportLine],
      controllers: [SlowImportController],
      // 50 changes kept in memory at most: the import goes to the journal, stored in parts.
      audit: { storeTimeout: STORE_TIMEOUT, maxChangesPerEvent: 10 },
    });
  });
  afterAll(async () => {
    proxy?.setLatency(0);
    await t?.close();
    await proxy?.stop();
    await db?.drop();
  });

  it('answers 201 once every part is stored, with every change recorded', { timeout: 60_000 }, async () => {
    const batch = `slow-${kind}`;
    const started = Date.now();
    let response: Response;
    try {
      response = await t.request('/slow-import', { method: 'POST', json: { batch }, headers: { 'x-request-id': batch }, signal: AbortSignal.timeout(50_000) });
    } finally {
      proxy.setLatency(0);
    }
    const ms = Date.now() - started;
    expect(response.status).toBe(201);
    // The store outlasted storeTimeout: its time was counted from each part, not from its start.
    expect(ms).toBeGreaterThan(STORE_TIMEOUT * 2);
    const rows = (await t.rows()).filter((row) => row.requestId === batch);
    expect(rows.length).toBeGreaterThan(1);
    expect(new Set(rows.map((row) => row.action))).toEqual(new Set(['lines.imported']));
    expect(rows.map((row) => row.outcome)).toEqual(rows.map(() => 'success'));
    const ids = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'ImportLine' && change.operation === 'insert').map((change) => change.id);
    expect(new Set(ids).size).toBe(LINES);
  });
});
