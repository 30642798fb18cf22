import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, createTestApp, type TestApp } from '../app/create-test-app.js';
import { PriceOverrides, PriceOverridesController } from '../app/hostile-sync-audited.js';
import { NestedOrderWriter, RecordPathController } from '../app/record-path.controller.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const combos = databases().flatMap((db) => ADAPTERS.map((adapter) => [db, adapter] as const));
const ALICE = { authorization: 'Bearer alice-token' };

/**
 * Units a request starts inside itself (a synchronous `@Audited` provider method, an
 * `@Audited` method or `runAs` inside the handler's transaction): their events are the
 * request's events, so "a 2xx means the audit trail has it" covers them. Fail-closed:
 * while they cannot be stored, the request gets no 2xx.
 */
describe.each(combos)('child units of a request while audit_log cannot be written, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter,
      controllers: [PriceOverridesController, RecordPathController],
      providers: [PriceOverrides, NestedOrderWriter],
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** `audit_log` under another name (`away`) or its own; the domain tables are untouched. */
  const renameAuditLog = (away: boolean): Promise<void> => moveAuditLog(t.dataSource, db, away);

  /** The status of one request sent while `audit_log` is away. */
  const statusWhileAway = async (path: string, json: unknown): Promise<number> => {
    await renameAuditLog(true);
    try {
      const status = (await t.request(path, { method: 'POST', json, headers: ALICE, signal: AbortSignal.timeout(10_000) })).status;
      await new Promise((resolve) => setTimeout(resolve, 200)); // background stores fail while the table is away
      return status;
    } finally {
      await renameAuditLog(false);
    }
  };

  it('a synchronous @Audited provider method', async () => {
    expect(await statusWhileAway('/hostile/prices', {})).toBe(500);
  });

  it('an @Audited provider method inside the handler’s transaction', async () => {
    expect(await statusWhileAway('/record-path/nested', { note: `fc-nested-${adapter}` })).toBe(500);
  });

  it('runAs inside the handler’s transaction', async () => {
    expect(await statusWhileAway('/record-path/run-as', { note: `fc-run-as-${adapter}` })).toBe(500);
  });
});
