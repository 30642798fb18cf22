import { APP_INTERCEPTOR } from '@nestjs/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditJournalEntity, type AuditChange, type AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { deferredTableSql, RecSController, RecSDeferred, RecSItem, RecSNestedWriter, RecSTxInterceptor, RecSTxNestedController, RVB_ENTITIES } from './record-scenario-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** No NUL and no lone surrogate. */
const wellFormed = (text: string): boolean => !text.includes('\u0000') && !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
const itemChanges = (rows: AuditLogEntity[]): AuditChange[] => rows.flatMap((row) => row.changes ?? []).filter((c) => c.entity === 'RecSItem');

describe.each(databases())('scenario: record path edges on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: RVB_ENTITIES,
      controllers: [RecSController, RecSTxNestedController],
      providers: [RecSNestedWriter, { provide: APP_INTERCEPTOR, useClass: RecSTxInterceptor }],
    });
    await t.dataSource.query(deferredTableSql(kind, 'schema' in db.options ? (db.options.schema as string | undefined) : undefined));
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const journal = () => t.dataSource.getRepository(AuditJournalEntity).count();
  const lateErrors = () => t.app.get(RecSController).lateErrors;

  describe('a unit inside a transaction whose commit fails', () => {
    it.skipIf(kind === 'mariadb')('a nested @Audited method: an error for the client, the nested intent is not success and claims nothing', async () => {
      const response = await t.request('/recs/tx/nested-commit-fails', { method: 'POST', json: { note: 'nested-cf' }, headers: { 'x-recs-user': '40' } });
      expect(response.status).toBeGreaterThanOrEqual(500);
      expect(await t.dataSource.getRepository(RecSItem).findOneBy({ note: 'nested-cf' })).toBeNull();
      await sleep(300);
      const rows = await t.rows();
      expect(JSON.stringify(rows)).not.toContain('nested-cf');
      expect(rows.filter((row) => row.outcome === 'success')).toEqual([]);
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.nested', 'intent', 'failure']]);
      expect(rows[0]!.changes).toEqual([]);
      expect(await journal()).toBe(0);
    });

    it.skipIf(kind === 'mariadb')('log() outside a request in a transaction whose commit fails: no event', async () => {
      await expect(
        t.dataSource.transaction(async (manager) => {
          const item = await manager.save(RecSItem, manager.create(RecSItem, { note: 'log-cf' }));
          await t.audit.log({ action: 'recs.logged', target: item });
          await manager.save(RecSDeferred, manager.create(RecSDeferred, { itemId: 987654321 }));
        }),
      ).rejects.toThrow();
      await sleep(300);
      expect(await t.rows()).toEqual([]);
      expect(await journal()).toBe(0);
    });

    it('control: the same nested @Audited call, the transaction rolled back by a throw: failure, TransactionRolledBack, nothing claimed', async () => {
      const response = await t.request('/recs/tx/nested-thrown', { method: 'POST', json: { note: 'nested-thrown' }, headers: { 'x-recs-user': '40' } });
      expect(response.status).toBeGreaterThanOrEqual(500);
      await sleep(300);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.nested', 'intent', 'failure']]);
      expect(rows[0]!.error).toMatchObject({ name: 'TransactionRolledBack' });
      expect(rows[0]!.changes).toEqual([]);
    });

    it.skipIf(kind === 'mariadb')('runAs: an error for the client, no change recorded as done', async () => {
      const response = await t.request('/recs/tx/run-as-commit-fails', { method: 'POST', json: { note: 'runas-cf' }, headers: { 'x-recs-user': '41' } });
      expect(response.status).toBeGreaterThanOrEqual(500);
      await sleep(300);
      const rows = await t.rows();
      expect(itemChanges(rows)).toEqual([]);
      expect(await journal()).toBe(0);
    });
  });

  describe('audit.log() outside a request, in savepoints and hand-started transactions', () => {
    it('log() inside a savepoint rolled back, the outer transaction committing: no event', async () => {
      await t.dataSource.transaction(async (manager) => {
        await manager.save(RecSItem, manager.create(RecSItem, { note: 'outer-kept' }));
        await manager
          .transaction(async (inner) => {
            const item = await inner.save(RecSItem, inner.create(RecSItem, { note: 'inner-gone' }));
            await t.audit.log({ action: 'recs.inner.logged', target: item });
            throw new Error('inner rolls back');
          })
          .catch(() => undefined);
      });
      await sleep(300);
      const rows = await t.rows();
      expect(rows.filter((row) => row.action === 'recs.inner.logged')).toEqual([]);
      expect(JSON.stringify(rows)).not.toContain('inner-gone');
      expect(itemChanges(rows)).toMatchObject([{ operation: 'insert', fields: { note: { to: 'outer-kept' } } }]);
    });

    it('log() with the manager of a hand-started transaction: rolled back, no event; committed, one event and no fallback row', async () => {
      const runner = t.dataSource.createQueryRunner();
      await runner.connect();
      try {
        await runner.startTransaction();
        const item = await runner.manager.save(RecSItem, runner.manager.create(RecSItem, { note: 'qr-rollback' }));
        await t.audit.log({ action: 'recs.qr.logged', target: item }, { manager: runner.manager });
        await runner.rollbackTransaction();

        await runner.startTransaction();
        const kept = await runner.manager.save(RecSItem, runner.manager.create(RecSItem, { note: 'qr-commit' }));
        await t.audit.log({ action: 'recs.qr.logged', target: kept }, { manager: runner.manager });
        await runner.commitTransaction();
      } finally {
        await runner.release();
      }
      await sleep(300);
      const rows = await t.rows();
      expect(JSON.stringify(rows)).not.toContain('qr-rollback');
      expect(rows.map((row) => [row.action, row.kind])).toEqual([['recs.qr.logged', 'intent']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });

    it('two log() calls for the same target in one transaction: two events, the change claimed once, no fallback row', async () => {
      await t.dataSource.transaction(async (manager) => {
        const item = await manager.save(RecSItem, manager.create(RecSItem, { note: 'twice' }));
        await t.audit.log({ action: 'recs.logged.one', target: item });
        await t.audit.log({ action: 'recs.logged.two', target: item });
      });
      await sleep(300);
      const rows = await t.rows();
      expect(rows.map((row) => row.kind)).toEqual(['intent', 'intent']);
      expect(itemChanges(rows)).toHaveLength(1);
    });
  });

  describe('work left running after the response', () => {
    it('a write not awaited by the handler, landing after the response: system, with originRequestId', async () => {
      const response = await t.request('/recs/unawaited', { method: 'POST', json: { note: 'unawaited-1' }, headers: { 'x-recs-user': '42' } });
      expect(response.status).toBe(201);
      const requestId = response.headers.get('x-request-id');
      await expect.poll(async () => itemChanges(await t.rows()).length, { timeout: 5000 }).toBe(1);
      await sleep(200);
      expect(lateErrors()).toEqual([]);
      const rows = await t.rows();
      const late = rows.filter((row) => (row.changes ?? []).some((c) => c.entity === 'RecSItem'));
      expect(late).toHaveLength(1);
      expect(late[0]!.actorType).toBe('system');
      expect(late[0]!.actorId).not.toBe('42');
      expect(late[0]!.context).toMatchObject({ originRequestId: requestId });
    });

    it('a timer calling an @Audited provider method: not the request’s user, with originRequestId', async () => {
      const response = await t.request('/recs/late-audited', { method: 'POST', json: { note: 'late-audited-1' }, headers: { 'x-recs-user': '43' } });
      expect(response.status).toBe(201);
      const requestId = response.headers.get('x-request-id');
      await expect.poll(async () => (await t.rows()).filter((row) => row.action === 'recs.nested').length, { timeout: 5000 }).toBe(1);
      await sleep(200);
      expect(lateErrors()).toEqual([]);
      const rows = await t.rows();
      const nested = rows.find((row) => row.action === 'recs.nested')!;
      expect(nested.actorType).toBe('system');
      expect(nested.actorId).not.toBe('43');
      expect(nested.context).toMatchObject({ originRequestId: requestId });
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
    });

    it('a timer calling log(): system, with originRequestId', async () => {
      const response = await t.request('/recs/late-log', { method: 'POST', json: { note: 'late-log-1' }, headers: { 'x-recs-user': '44' } });
      expect(response.status).toBe(201);
      const requestId = response.headers.get('x-request-id');
      await expect.poll(async () => (await t.rows()).filter((row) => row.action === 'recs.reminded').length, { timeout: 5000 }).toBe(1);
      const row = (await t.rows()).find((r) => r.action === 'recs.reminded')!;
      expect(row.actorType).toBe('system');
      expect(row.context).toMatchObject({ originRequestId: requestId });
    });
  });

  describe('concurrency through the transaction interceptor', () => {
    it.skipIf(kind === 'sqlite')('40 concurrent requests of 40 users, each in its interceptor’s transaction, some with a nested @Audited call: no bleeding', { timeout: 30_000 }, async () => {
      const responses = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          t.request(i % 2 ? '/recs/tx/ok' : '/recs-tx-nested', {
            method: 'POST',
            json: { note: `ctx-${i}` },
            headers: { 'x-recs-user': String(500 + i), 'x-request-id': `recs-ctx-${i}` },
          }),
        ),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(40).fill(201));
      await sleep(200);
      const rows = await t.rows();
      expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
      expect(rows).toHaveLength(40);
      for (const row of rows) {
        const i = Number(/^recs-ctx-(\d+)$/.exec(row.requestId!)![1]);
        expect(row.actorId).toBe(String(500 + i));
        expect(row.action).toBe(i % 2 ? 'recs.tx' : 'recs.nested');
        expect(row.changes).toHaveLength(1);
        expect(row.changes![0]!.fields!['note']).toMatchObject({ to: `ctx-${i}` });
      }
    });
  });

  describe('@Res() variants', () => {
    it('@Res({ passthrough: true }) with res.status(404): failure with status 404', async () => {
      const response = await t.request('/recs/passthrough/99999', { method: 'PATCH', json: {}, headers: { 'x-recs-user': '45' } });
      expect(response.status).toBe(404);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.passthrough', 'intent', 'failure']]);
      expect(rows[0]!.error).toMatchObject({ status: 404 });
    });

    it('res.redirect(303) through @Res(): success, claiming the insert', async () => {
      const response = await t.request('/recs/raw/redirect', { method: 'POST', json: { note: 'redir' }, headers: { 'x-recs-user': '46' }, redirect: 'manual' });
      expect(response.status).toBe(303);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['recs.redirected', 'intent', 'success']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });
  });

  describe('more hostile values', () => {
    it.each([
      ['an emoji', 'x😀y'],
      ['an emoji pair cut at the column bound', `${'a'.repeat(1023)}😀`],
      ['an emoji pair cut at the target id bound', `${'a'.repeat(254)}😀😀`],
      ['NUL near the bound', `${'a'.repeat(1020)}\u0000\u0000\u0000`],
    ])('%s in reason, actor display, actor id and target id: stored, request succeeds', async (_, bad) => {
      const response = await t.request('/recs/hostile', {
        method: 'POST',
        json: { note: 'hostile-2', reason: bad, targetId: bad, user: { id: bad, email: bad } },
      });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.outcome])).toEqual([['recs.hostile', 'success']]);
      for (const value of [rows[0]!.reason, rows[0]!.targetId, rows[0]!.actorDisplay, rows[0]!.actorId]) {
        expect(value).toBeTruthy();
        expect(wellFormed(value!)).toBe(true);
        expect(value).not.toContain('\u0000');
      }
    });

    it('NUL bytes and lone surrogates in context keys and values: stored, request succeeds', async () => {
      const ctx = { 'k\u0000ey': 'v\u0000al', ['lone\uD800']: ['\uDC00', { 'n\u0000': '\uD83D' }], plain: 'x' };
      const response = await t.request('/recs/hostile', {
        method: 'POST',
        json: { note: 'hostile-ctx', reason: 'ok', targetId: 'ok', user: { id: 1, email: 'a@b' }, ctx },
      });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.outcome])).toEqual([['recs.hostile', 'success']]);
      expect(rows[0]!.context).toMatchObject({ plain: 'x' });
      expect(wellFormed(JSON.stringify(rows[0]!.context))).toBe(true);
    });

    it('a NUL and a lone surrogate in the entity’s own column: the change is stored, request succeeds', async () => {
      const note = kind === 'postgres' ? 'lone \uD83D here' : 'nul \u0000 and lone \uD83D here';
      const response = await t.request('/recs/hostile', {
        method: 'POST',
        json: { note, reason: 'ok', targetId: 'ok', user: { id: 1, email: 'a@b' } },
      });
      expect(response.status).toBe(201);
      const rows = await t.rows();
      expect(rows.map((row) => [row.action, row.outcome])).toEqual([['recs.hostile', 'success']]);
      expect(itemChanges(rows)).toHaveLength(1);
    });
  });
});
