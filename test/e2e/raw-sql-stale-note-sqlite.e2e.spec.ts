// TypeORM 0.3's better-sqlite3 runner sends no afterQuery for a failed statement, so the
// note beforeQuery took of it stays under its parameters array. The same query with the
// same array (a constant, a retry) replaces it: its change is recorded for its own unit of
// work, not the failed call's. (NestJS 11 + TypeORM 0.3 suite; TypeORM 1 sends afterQuery.)
import { Controller, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/** A constant parameters array, as an app may keep one. */
const STEP = [1];
const BUMP = 'UPDATE raw_counter SET v = v + ?';

@Controller('bump')
class BumpController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Post()
  @Audited('counter.bumped')
  async bump(): Promise<{ ok: true }> {
    await this.dataSource.query(BUMP, STEP);
    return { ok: true };
  }
}

describe('a stale raw-write note on better-sqlite3', () => {
  let db: TestDatabase;
  let t: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('sqlite');
    t = await createTestApp({ db, adapter: 'express', controllers: [BumpController], audit: {} });
    await t.dataSource.query('CREATE TABLE raw_counter (v integer)');
    await t.dataSource.query('INSERT INTO raw_counter (v) VALUES (0)');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('a failed call outside any unit, then the same call in an @Audited handler: the change belongs to the handler', async () => {
    await t.dataSource.query(`CREATE TRIGGER reject_bump BEFORE UPDATE ON raw_counter BEGIN SELECT RAISE(ABORT, 'injected'); END`);
    const failed = await t.dataSource.query(BUMP, STEP).then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    await t.dataSource.query('DROP TRIGGER reject_bump');
    await t.app.get(AuditWriter).drain(10_000);
    await t.clearAudit();

    const response = await t.request('/bump', { method: 'POST' });
    await t.app.get(AuditWriter).drain(10_000);
    const rows = (await t.rows()).map((row) => ({ action: row.action, kind: row.kind, changes: row.changes?.length ?? 0 }));
    expect({ failed, status: response.status, rows }).toEqual({
      failed: expect.stringContaining('injected'),
      status: 201,
      rows: [{ action: 'counter.bumped', kind: 'intent', changes: 1 }],
    });
  });
});
