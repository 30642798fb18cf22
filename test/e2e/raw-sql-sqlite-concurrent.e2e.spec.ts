// On SQLite every query runs on the driver's one connection (`driver.queryRunner`). Two raw
// writes sent at once (Promise.all, the usual way to run independent statements) each run
// as they are: a transaction of the module's around the first would take in the second,
// and a failure of the first would roll back the second, whose query() had resolved.
import { Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

@Controller('paired-raw')
class PairedRawController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Two independent raw inserts at once; the first may fail (duplicate key), which the handler tolerates. */
  @Post()
  @Audited('raw.pair')
  async pair(): Promise<{ results: string[] }> {
    const results = await Promise.allSettled([
      this.dataSource.query('INSERT INTO raw_u (id) VALUES (1)'),
      this.dataSource.query('INSERT INTO raw_u (id) VALUES (4)'),
    ]);
    return { results: results.map((result) => result.status) };
  }
}

describe('concurrent raw writes on SQLite (one connection)', () => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter: 'express', controllers: [PairedRawController] });
    await t.dataSource.query('CREATE TABLE raw_u (id integer primary key)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.app.get(AuditWriter).drain(10_000);
    await t.dataSource.query('DELETE FROM raw_u');
    await t.dataSource.query('INSERT INTO raw_u (id) VALUES (1)');
    await t.clearAudit();
  });

  it('a raw write whose query() resolved stays committed when a raw write sent beside it fails', async () => {
    const [failing, good] = await Promise.allSettled([
      t.dataSource.query('INSERT INTO raw_u (id) VALUES (1)'), // duplicate key: fails
      t.dataSource.query('INSERT INTO raw_u (id) VALUES (2)'),
    ]);
    await t.app.get(AuditWriter).drain(10_000);
    const ids = ((await t.dataSource.query('SELECT id FROM raw_u ORDER BY id')) as Array<{ id: number }>).map((row) => row.id);
    const records = (await t.rows()).map((row) => ({ kind: row.kind, outcome: row.outcome, changes: row.changes?.map((change) => change.operation) }));
    expect({ failing: failing.status, good: good.status, ids, records }).toEqual({
      failing: 'rejected',
      good: 'fulfilled',
      ids: [1, 2],
      records: [expect.objectContaining({ changes: ['insert'] })],
    });
  });

  it('sent a few microtasks apart: each write whose query() resolved is committed and recorded once', async () => {
    const outcomes: string[] = [];
    for (let k = 0; k < 8; k++) {
      await t.dataSource.query('DELETE FROM raw_u WHERE id <> 1');
      await t.clearAudit();
      const failing = t.dataSource.query('INSERT INTO raw_u (id) VALUES (1)'); // duplicate key: fails
      for (let i = 0; i < k; i++) await Promise.resolve();
      const good = t.dataSource.query('INSERT INTO raw_u (id) VALUES (2)');
      const [a, b] = await Promise.allSettled([failing, good]);
      await t.app.get(AuditWriter).drain(10_000);
      const kept = ((await t.dataSource.query('SELECT id FROM raw_u WHERE id = 2')) as unknown[]).length === 1;
      const records = (await t.rows()).length;
      outcomes.push(`k=${k}: failing ${a.status}, good ${b.status}, row ${kept ? 'kept' : 'LOST'}, records ${records}`);
    }
    expect(outcomes).toEqual(Array.from({ length: 8 }, (_, k) => `k=${k}: failing rejected, good fulfilled, row kept, records 1`));
  });
  it('in an @Audited handler: the insert the handler saw succeed is committed, and its request records it', async () => {
    const response = await t.request('/paired-raw', { method: 'POST' });
    const body = (await response.json()) as { results: string[] };
    await t.app.get(AuditWriter).drain(10_000);
    const ids = ((await t.dataSource.query('SELECT id FROM raw_u ORDER BY id')) as Array<{ id: number }>).map((row) => row.id);
    const records = (await t.rows()).map((row) => ({ action: row.action, outcome: row.outcome, changes: row.changes?.length ?? 0 }));
    expect({ status: response.status, results: body.results, ids, records }).toEqual({
      status: 201,
      results: ['rejected', 'fulfilled'],
      ids: [1, 4],
      records: [{ action: 'raw.pair', outcome: 'success', changes: 1 }],
    });
  });
});
