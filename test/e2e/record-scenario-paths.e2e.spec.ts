import { APP_INTERCEPTOR } from '@nestjs/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, type AuditChange, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import {
  deferredTableSql,
  RecSController,
  RecSItem,
  RecSLine,
  RecSLocalTxController,
  RecSNestedWriter,
  RecSScopedController,
  RecSScopedWriter,
  RecSTxInterceptor,
  RVB_ENTITIES,
} from './record-scenario-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const itemChanges = (rows: AuditLogEntity[]): AuditChange[] => rows.flatMap((row) => row.changes ?? []).filter((c) => c.entity === 'RecSItem');

describe.each(databases())('scenario: the record path on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: RVB_ENTITIES,
      controllers: [RecSController, RecSScopedController, RecSLocalTxController],
      providers: [RecSNestedWriter, RecSScopedWriter, { provide: APP_INTERCEPTOR, useClass: RecSTxInterceptor }],
      audit: { recoverAfter: 1_000 },
    });
    await t.dataSource.query(deferredTableSql(kind, 'schema' in db.options ? (db.options.schema as string | undefined) : undefined));
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const journal = () => t.dataSource.getRepository(AuditJournalEntity).count();

  describe('hostile values', () => {
    const cases: Array<[string, string]> = [
      ['a NUL byte', 'before\u0000after'],
      ['a lone high surrogate', 'before\uD800after'],
      ['a lone low surrogate at the end', 'tail\uDC00'],
    ];
    it.each(cases)('%s in reason, actor display and target id: stored, request succeeds', async (_, bad) => {
      const response = await t.request('/recs/hostile', {
        method: 'POST',
        json: { note: 'hostile-ok', reason: `r-${bad}`, targetId: `t-${bad}`, user: { id: 77, email: `e-${bad}` } },
      });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.hostile', 'intent', 'success']]);
      const row = rows[0]!;
      expect(row.actorId).toBe('77');
      for (const value of [row.reason, row.targetId, row.actorDisplay]) {
        expect(typeof value).toBe('string');
        expect(value).not.toContain('\u0000');
        expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value!)).toBe(false);
      }
      expect(row.reason!.startsWith('r-')).toBe(true);
      expect(row.targetId!.startsWith('t-')).toBe(true);
      expect(row.actorDisplay!.startsWith('e-')).toBe(true);
      expect(itemChanges(rows)).toHaveLength(1);
      // Two different hostile values stay distinguishable from the plain text.
      expect(row.reason).not.toBe('r-beforeafter');
    });

    it('a reason and target id of 5,000 characters with NULs: stored bounded, request succeeds', async () => {
      const big = 'x\u0000'.repeat(2500);
      const response = await t.request('/recs/hostile', {
        method: 'POST',
        json: { note: 'hostile-big', reason: big, targetId: big, user: { id: 78, email: big } },
      });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.outcome])).toEqual([['recs.hostile', 'success']]);
    });
  });

  describe('@Res(), SSE and StreamableFile', () => {
    it('res.status(201).json(...): success, claiming the insert', async () => {
      const response = await t.request('/recs/raw/created', { method: 'POST', json: { note: 'raw-201' }, headers: { 'x-recs-user': '5' } });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome, row.actorId])).toEqual([['recs.raw.created', 'intent', 'success', '5']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });

    it('res.status(404).json() with no body: failure with status 404', async () => {
      const response = await t.request('/recs/raw/missing/99999', { method: 'PATCH', json: {}, headers: { 'x-recs-user': '5' } });
      expect(response.status).toBe(404);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.raw.updated', 'intent', 'failure']]);
      expect(rows[0]!.error).toMatchObject({ status: 404 });
    });

    it('an @Sse stream: success, claiming the insert, stored when the client has the stream', async () => {
      const response = await t.request('/recs/sse?note=sse-recs', { headers: { 'x-recs-user': '6' } });
      expect(response.status).toBe(200);
      const body = await response.text();
      expect(body.match(/^data: /gm)).toHaveLength(2);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome, row.actorId])).toEqual([['recs.sse', 'intent', 'success', '6']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });

    it.each(['file', 'file-buffer'])('a StreamableFile (%s): success, claiming the insert', async (route) => {
      const response = await t.request(`/recs/${route}?note=file-${route}`, { headers: { 'x-recs-user': '7' } });
      expect(response.status).toBe(200);
      await response.text();
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome, row.actorId])).toEqual([['recs.file', 'intent', 'success', '7']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });
  });

  describe('a transaction interceptor handing the manager through AsyncLocalStorage', () => {
    it('APP_INTERCEPTOR: the intent carries the change, no fallback row', async () => {
      const response = await t.request('/recs/tx/ok', { method: 'POST', json: { note: 'tx-ok' }, headers: { 'x-recs-user': '8' } });
      expect(response.status).toBe(201);
      const created = (await response.json()) as RecSItem;
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome, row.actorId])).toEqual([['recs.tx', 'intent', 'success', '8']]);
      expect(rows[0]!.changes).toHaveLength(1);
      expect(rows[0]!.changes![0]).toMatchObject({ entity: 'RecSItem', id: String(created.id), operation: 'insert' });
      expect(await journal()).toBe(0);
    });

    it('@UseInterceptors on the controller: the intent carries the change, no fallback row', async () => {
      const response = await t.request('/recs-local', { method: 'POST', json: { note: 'tx-local' }, headers: { 'x-recs-user': '8' } });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.local.tx', 'intent', 'success']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });

    it.skipIf(kind === 'mariadb')('the commit itself fails (a deferred foreign key): an error, the intent is not success, no change recorded', async () => {
      const response = await t.request('/recs/tx/commit-fails', { method: 'POST', json: { note: 'tx-commit-fails' }, headers: { 'x-recs-user': '9' } });
      expect(response.status).toBeGreaterThanOrEqual(500);
      expect(await t.dataSource.getRepository(RecSItem).findOneBy({ note: 'tx-commit-fails' })).toBeNull();
      await sleep(300);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.tx', 'intent', 'failure']]);
      expect(rows[0]!.changes ?? []).toEqual([]);
      expect(JSON.stringify(rows)).not.toContain('tx-commit-fails');
      expect(await journal()).toBe(0);
    });
  });

  describe('units inside their caller’s transaction', () => {
    it('a nested @Audited provider method in an undecorated route’s transaction: its changes claimed, no fallback rows', async () => {
      const response = await t.request('/recs/nested', { method: 'POST', json: { note: 'nested-1' }, headers: { 'x-recs-user': '10' } });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };
      const rows = await t.rows();
      // The route's own update (after the nested call) is the route's fallback change; the insert is the nested intent's.
      const intent = rows.filter((row) => row.kind === 'intent');
      expect(intent.map((row) => [row.action, row.outcome, row.actorId])).toEqual([['recs.nested', 'success', '10']]);
      expect(intent[0]!.changes).toMatchObject([{ entity: 'RecSItem', id: String(id), operation: 'insert' }]);
      const fallback = rows.filter((row) => row.kind === 'change');
      expect(fallback.flatMap((row) => row.changes ?? [])).toMatchObject([{ id: String(id), operation: 'update', fields: { status: { to: 'after-nested' } } }]);
      expect(await journal()).toBe(0);
    });

    it('a nested @Audited provider method in an @Audited route’s transaction: changes claimed once, no fallback rows', async () => {
      const response = await t.request('/recs/nested-audited', { method: 'POST', json: { note: 'nested-2' }, headers: { 'x-recs-user': '10' } });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows.map((row) => row.action).sort()).toEqual(['recs.nested', 'recs.outer']);
      const changes = itemChanges(rows);
      expect(changes).toHaveLength(2);
      expect(new Set(changes.map((c) => c.id)).size).toBe(2);
    });

    it('runAs inside the route’s transaction: its changes claimed, no fallback rows', async () => {
      const response = await t.request('/recs/run-as', { method: 'POST', json: { note: 'run-as-1' }, headers: { 'x-recs-user': '11' } });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };
      const rows = await t.rows();
      const mine = rows.filter((row) => row.actorType === 'service');
      expect(mine.flatMap((row) => row.changes ?? [])).toMatchObject([{ entity: 'RecSItem', id: String(id), operation: 'insert' }]);
      const users = rows.filter((row) => row.actorType === 'user');
      expect(users.flatMap((row) => row.changes ?? [])).toMatchObject([{ id: String(id), operation: 'update', fields: { status: { to: 'after-run-as' } } }]);
      expect(rows).toHaveLength(2);
      expect(await journal()).toBe(0);
    });
  });

  describe('audit.log() outside a request, inside a transaction', () => {
    it('rolled back: no event', async () => {
      await expect(
        t.dataSource.transaction(async (manager) => {
          const item = await manager.save(RecSItem, manager.create(RecSItem, { note: 'log-rollback' }));
          await t.audit.log({ action: 'recs.logged', target: { type: 'RecSItem', id: String(item.id) } });
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await sleep(300);
      expect(await t.rows()).toEqual([]);
    });

    it('committed: exactly one event, no duplicate fallback row for the same change', async () => {
      let id = 0;
      await t.dataSource.transaction(async (manager) => {
        const item = await manager.save(RecSItem, manager.create(RecSItem, { note: 'log-commit' }));
        id = item.id;
        await t.audit.log({ action: 'recs.logged', target: item });
      });
      await sleep(300);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind])).toEqual([['recs.logged', 'intent']]);
      const changes = itemChanges(rows);
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({ id: String(id), operation: 'insert' });
    });

    it('committed, log() before the save: exactly one event, no duplicate fallback row', async () => {
      await t.dataSource.transaction(async (manager) => {
        const item = manager.create(RecSItem, { note: 'log-first' });
        await manager.save(item);
        await t.audit.log({ action: 'recs.logged', target: { type: 'RecSItem', id: String(item.id) } });
        item.status = 'changed-after-log';
        await manager.save(item);
      });
      await sleep(300);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind])).toEqual([['recs.logged', 'intent']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });
  });

  describe('work left running after the response', () => {
    it('a timer’s transaction: actor system with context.originRequestId, not the request’s user', async () => {
      const response = await t.request('/recs/late', { method: 'POST', json: { note: 'late-recs' }, headers: { 'x-recs-user': '12' } });
      expect(response.status).toBe(201);
      const requestId = response.headers.get('x-request-id');
      await expect.poll(async () => itemChanges(await t.rows()).length, { timeout: 5000 }).toBe(1);
      await sleep(200);
      const rows = await t.rows();
      const controller = t.app.get(RecSController);
      expect(controller.lateErrors).toEqual([]);
      const late = rows.filter((row) => row.action !== 'recs.scheduled');
      expect(late).toHaveLength(1);
      expect(late[0]).toMatchObject({ actorType: 'system', kind: 'change' });
      expect(late[0]!.actorId).not.toBe('12');
      expect(late[0]!.context).toMatchObject({ originRequestId: requestId });
    });
  });

  describe('concurrency and request scope', () => {
    it('50 concurrent requests of 50 users: each event is its own request’s user’s and claims its own insert', async () => {
      const responses = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          t.request('/recs/items', { method: 'POST', json: { note: `cc-${i}` }, headers: { 'x-recs-user': String(100 + i), 'x-request-id': `recs-cc-${i}` } }),
        ),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(50).fill(201));
      const rows = await t.rows();
      expect(rows).toHaveLength(50);
      for (const row of rows) {
        const i = Number(/^recs-cc-(\d+)$/.exec(row.requestId!)![1]);
        expect(row.actorId).toBe(String(100 + i));
        expect(row.actorDisplay).toBe(`u${100 + i}@recs.example`);
        expect(row.changes).toHaveLength(1);
        expect(row.changes![0]!.fields!['note']).toMatchObject({ to: `cc-${i}` });
      }
    });

    it('a request-scoped provider writing, 20 at once: each event its own user’s, claiming its own insert', async () => {
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.request('/recs-scoped', { method: 'POST', headers: { 'x-recs-user': String(300 + i), 'x-request-id': `recs-sc-${i}` } })),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
      const rows = await t.rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows).toHaveLength(20);
      for (const row of rows) {
        const i = Number(/^recs-sc-(\d+)$/.exec(row.requestId!)![1]);
        expect(row.actorId).toBe(String(300 + i));
        expect(row.changes).toHaveLength(1);
        expect(row.changes![0]!.fields!['note']).toMatchObject({ to: `scoped-${300 + i}` });
      }
    });
  });

  describe('fail-closed', () => {
    it('audit_log away: no 2xx for an audited write, @Res() included; stored once it is back', async () => {
      await moveAuditLog(t.dataSource, db, true);
      let statuses: Array<number | string>;
      try {
        const attempts = [
          t.request('/recs/items', { method: 'POST', json: { note: 'fc-1' }, headers: { 'x-recs-user': '20' } }),
          t.request('/recs/raw/created', { method: 'POST', json: { note: 'fc-2' }, headers: { 'x-recs-user': '20' } }),
          t.request('/recs/tx/ok', { method: 'POST', json: { note: 'fc-3' }, headers: { 'x-recs-user': '20' } }),
          t.request('/recs/nested', { method: 'POST', json: { note: 'fc-4' }, headers: { 'x-recs-user': '20' } }),
          t.request('/recs/file-buffer?note=fc-5', { headers: { 'x-recs-user': '20' } }),
        ];
        statuses = await Promise.all(
          attempts.map(async (p) => {
            let status: number | undefined;
            try {
              const r = await p;
              status = r.status;
              await r.text();
              return r.status;
            } catch (error) {
              // A connection reset (after headers, for a declared-length body) is not a whole answer.
              return `broken after ${status}: ${String(error)}`;
            }
          }),
        );
      } finally {
        await moveAuditLog(t.dataSource, db, false);
      }
      for (const status of statuses) expect(typeof status === 'number' ? status >= 200 && status < 300 : false, String(status)).toBe(false);
      // Five inserts and the nested route's own update.
      await expect.poll(async () => itemChanges(await t.rows()).length, { timeout: 8000 }).toBe(6);
    });
  });

  describe('a large import', () => {
    it('20,000 rows inserted in one request, in chunks: every insert recorded, no failed write', { timeout: 120_000 }, async () => {
      const started = Date.now();
      const response = await t.request('/recs/import', { method: 'POST', json: { batch: `imp-${kind}`, count: 20_000 }, headers: { 'x-recs-user': '30' } });
      expect(response.status).toBe(201);
      const elapsed = Date.now() - started;
      const rows = await t.rows();
      expect(rows.filter((row) => !(row.action === 'recs.imported' && row.kind === 'intent' && row.outcome === 'success')).map((row) => [row.action, row.kind, row.outcome, row.changes?.length])).toEqual([]);
      const lines = rows.flatMap((row) => row.changes ?? []).filter((c) => c.entity === 'RecSLine' && c.operation === 'insert');
      expect(new Set(lines.map((c) => c.id)).size).toBe(20_000);
      expect(lines).toHaveLength(20_000);
      expect(await journal()).toBe(0);
      expect(elapsed).toBeLessThan(90_000);
    });

    it('20,000 rows saved in one transaction: every insert recorded, no failed write', { timeout: 180_000 }, async () => {
      const response = await t.request('/recs/import-save', { method: 'POST', json: { batch: `sav-${kind}`, count: 20_000 }, headers: { 'x-recs-user': '31' } });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.every((row) => row.action === 'recs.imported' && row.kind === 'intent' && row.outcome === 'success')).toBe(true);
      const ids = new Set(rows.flatMap((row) => row.changes ?? []).filter((c) => c.entity === 'RecSLine' && c.operation === 'insert').map((c) => c.id));
      expect(ids.size).toBe(20_000);
      expect(await t.dataSource.getRepository(RecSLine).countBy({ batch: `sav-${kind}` })).toBe(20_000);
      expect(await journal()).toBe(0);
    });
  });
});
