import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { HostileImportController } from '../app/hostile-import.controller.js';
import { ImportLine } from '../app/import-line.entity.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const LINES = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A unit too large to keep in memory (its changes spilled to the journal) whose storing
 * fails: once storage is back, every one of its events reaches `audit_log` exactly once,
 * including the manual `log()` event it holds only in memory.
 */
describe.each(databases())('a spilled unit whose storing fails, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: [ImportLine],
      controllers: [HostileImportController],
      // 10 changes per event: the unit keeps at most 50 in memory, the rest only in the journal.
      audit: { maxChangesPerEvent: 10, recoverAfter: 1_000 },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  /** `audit_log` under another name (`away`) or its own; the domain tables are untouched. */
  const renameAuditLog = (away: boolean): Promise<void> => moveAuditLog(t.dataSource, db, away);

  it('the manual event and every line reach audit_log once storage is back', async () => {
    const batch = `spill-${kind}`;
    const requestId = `hostile-spill-${kind}`;
    await renameAuditLog(true);
    let status: number;
    try {
      const response = await t.request('/hostile/import', {
        method: 'POST',
        json: { batch, count: LINES },
        headers: { 'x-request-id': requestId },
        signal: AbortSignal.timeout(20_000),
      });
      status = response.status;
    } finally {
      await renameAuditLog(false);
    }
    expect(status, 'fail-closed').toBe(500);
    expect(await t.dataSource.getRepository(ImportLine).countBy({ batch })).toBe(LINES);

    // The live instance stores (or recovers) the unit once storage is back.
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count()).toBe(0);
    await sleep(300);

    const rows = (await t.rows()).filter((row) => row.requestId === requestId);
    expect.soft(rows.filter((row) => row.action === 'import.approved').map((row) => [row.reason, row.context])).toEqual([
      [`batch ${batch} signed off`, { approver: 'alice' }],
    ]);
    const lines = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'ImportLine');
    expect.soft(new Set(lines.map((change) => change.id)).size).toBe(LINES);
    expect.soft(lines).toHaveLength(LINES);
    // The handler's event: its parts share one `first`, and part 1 (the one with that id) exists.
    const parts = rows.filter((row) => row.action === 'lines.imported');
    const firsts = new Set(parts.map((row) => (row.context?.['part'] as { first?: string } | undefined)?.first ?? row.id));
    expect.soft(firsts.size, 'one handler event, in parts').toBe(1);
    expect.soft(parts.map((row) => row.id)).toContain([...firsts][0]);
  });

  // A unit whose changes number an exact multiple of five times maxChangesPerEvent (all its
  // parts built from the journal) and whose storing fails — from the start, or after some of
  // its parts were stored: once storage is back, each part reaches `audit_log` once.
  const expectStoredOnce = async (requestId: string, lines: number) => {
    const journal = t.dataSource.getRepository(AuditJournalEntity);
    for (let i = 0; i < 100 && (await journal.count()) > 0; i++) await sleep(100);
    expect(await journal.count()).toBe(0);
    await sleep(300);
    const rows = (await t.rows()).filter((row) => row.requestId === requestId);
    expect(rows.filter((row) => row.action === 'import.approved')).toHaveLength(1);
    const changes = rows.flatMap((row) => row.changes ?? []).filter((change) => change.entity === 'ImportLine');
    expect(new Set(changes.map((change) => change.id)).size).toBe(lines);
    expect(changes).toHaveLength(lines);
    const parts = rows.filter((row) => row.action === 'lines.imported');
    expect(parts.map((row) => (row.changes ?? []).length)).toEqual(parts.map(() => 10));
    expect(parts).toHaveLength(lines / 10);
    const info = parts.map((row) => row.context?.['part'] as { index: number; count: number; first: string });
    expect(info.map((part) => part.index).sort((a, b) => a - b)).toEqual(Array.from({ length: parts.length }, (_, n) => n + 1));
    const first = parts[info.findIndex((part) => part.index === 1)]!;
    for (const part of info) expect(part).toMatchObject({ count: parts.length, first: first.id });
  };

  it.each([50, 100])('%i lines, audit_log away during the request: every part once storage is back', async (lines) => {
    const batch = `exact-away-${kind}-${lines}`;
    const requestId = `exact-away-${kind}-${lines}`;
    await moveAuditLog(t.dataSource, db, true);
    let status: number;
    try {
      const response = await t.request('/hostile/import', { method: 'POST', json: { batch, count: lines }, headers: { 'x-request-id': requestId } });
      status = response.status;
    } finally {
      await moveAuditLog(t.dataSource, db, false);
    }
    expect(status).toBe(500);
    await expectStoredOnce(requestId, lines);
  });

  it.runIf(kind === 'sqlite').each([50, 100])('%i lines, the store refused from part 3 on (a trigger), then allowed: every part once', async (lines) => {
    const batch = `exact-part3-${kind}-${lines}`;
    const requestId = `exact-part3-${kind}-${lines}`;
    await t.dataSource.query(
      `CREATE TRIGGER refuse_part3 BEFORE INSERT ON audit_log WHEN NEW.context LIKE '%"index":3,%' BEGIN SELECT RAISE(ABORT, 'part 3 refused'); END`,
    );
    let status: number;
    try {
      const response = await t.request('/hostile/import', { method: 'POST', json: { batch, count: lines }, headers: { 'x-request-id': requestId } });
      status = response.status;
    } finally {
      await t.dataSource.query('DROP TRIGGER refuse_part3');
    }
    expect(status).toBe(500);
    await expectStoredOnce(requestId, lines);
  });
});
