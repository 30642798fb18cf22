import { AsyncLocalStorage } from 'node:async_hooks';
import { Body, ConflictException, Controller, Injectable, Module, Post, UseInterceptors, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { InjectDataSource } from '@nestjs/typeorm';
import { from, lastValueFrom, type Observable } from 'rxjs';
import { DataSource, type EntityManager } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { changesOf, CtrItem, startContractApp, type ContractApp } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const currentManager = new AsyncLocalStorage<EntityManager>();

/**
 * An app's own transaction per request: begun before the handler, committed (after a
 * little while) once it has answered, rolled back — and turned into a 409 — when the
 * handler's result asks for it.
 */
@Injectable()
class TransactionPerRequestInterceptor implements NestInterceptor {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return from(
      (async () => {
        const runner = this.dataSource.createQueryRunner();
        await runner.connect();
        await runner.startTransaction();
        try {
          const result = (await currentManager.run(runner.manager, () => lastValueFrom(next.handle(), { defaultValue: undefined }))) as { veto?: boolean } | undefined;
          await sleep(50);
          if (result?.veto) {
            await runner.rollbackTransaction();
            throw new ConflictException('vetoed at commit');
          }
          await runner.commitTransaction();
          return result;
        } catch (error) {
          if (runner.isTransactionActive) await runner.rollbackTransaction();
          throw error;
        } finally {
          await runner.release();
        }
      })(),
    );
  }
}

@Controller('ctr-int')
class InterceptedController {
  @Post()
  @Audited('ctr.intercepted')
  async write(@Body() body: { name: string; veto?: boolean }): Promise<{ id: number; veto?: boolean }> {
    const manager = currentManager.getStore()!;
    const item = await manager.save(CtrItem, manager.create(CtrItem, { name: body.name }));
    item.status = 'checked';
    await manager.save(CtrItem, item);
    return { id: item.id, veto: body.veto };
  }

  /** Not audited: its changes are the safety net's. */
  @Post('plain')
  async plain(@Body() body: { name: string }): Promise<{ id: number }> {
    const manager = currentManager.getStore()!;
    const item = await manager.save(CtrItem, manager.create(CtrItem, { name: body.name }));
    return { id: item.id };
  }
}

/** A route-level interceptor that refuses the handler's result after it succeeded. */
@Injectable()
class RefuseAfterInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return from(
      (async () => {
        await lastValueFrom(next.handle(), { defaultValue: undefined });
        throw new ConflictException('refused after the handler');
      })(),
    );
  }
}

@Controller('ctr-int-local')
class LocallyInterceptedController {
  @Post()
  @UseInterceptors(RefuseAfterInterceptor)
  @Audited('ctr.intercepted.local')
  async write(): Promise<{ ok: true }> {
    return { ok: true };
  }
}

/** The interceptor registered by a module imported before `AuditModule`. */
@Module({ providers: [{ provide: APP_INTERCEPTOR, useClass: TransactionPerRequestInterceptor }] })
class EarlyTransactionModule {}

const PLACEMENTS = ['in the root module (after AuditModule)', 'in a module imported before AuditModule'] as const;

describe.each(databases().flatMap((kind) => PLACEMENTS.map((placement) => [kind, placement] as const)))(
  'contract: an APP_INTERCEPTOR transaction around the handler, on %s, registered %s',
  (kind, placement) => {
    let db: TestDatabase;
    let t: ContractApp;

    beforeAll(async () => {
      db = await createTestDatabase(kind);
      t = await startContractApp({
        db,
        controllers: [InterceptedController, LocallyInterceptedController],
        ...(placement === PLACEMENTS[0]
          ? { providers: [{ provide: APP_INTERCEPTOR, useClass: TransactionPerRequestInterceptor }] }
          : { importsBefore: [{ module: EarlyTransactionModule }] }),
      });
    });
    afterAll(async () => {
      await t?.close();
      await db?.drop();
    });

    it('committed after the handler: the intent claims the net insert; no fallback; stored before the 2xx', async () => {
      const name = 'int-commit';
      const response = await t.request('/ctr-int', { method: 'POST', json: { name } });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };
      const rows = (await t.rows()).filter((row) => changesOf([row], 'CtrItem').some((change) => change.id === String(id)) || row.action === 'ctr.intercepted');
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['ctr.intercepted', 'intent', 'success']]);
      expect(changesOf(rows, 'CtrItem')).toEqual([
        expect.objectContaining({ id: String(id), operation: 'insert', fields: expect.objectContaining({ name: { from: null, to: name }, status: { from: null, to: 'checked' } }) }),
      ]);
      expect([rows[0]!.targetType, rows[0]!.targetId]).toEqual(['CtrItem', String(id)]);
      expect(await t.journal()).toBe(0);
    });

    it('rolled back by the interceptor after the handler succeeded: the client gets 409, the intent is a failure without changes', async () => {
      const before = (await t.rows()).length;
      const response = await t.request('/ctr-int', { method: 'POST', json: { name: 'int-veto', veto: true } });
      expect(response.status).toBe(409);
      expect(await response.json()).toMatchObject({ message: 'vetoed at commit' });
      expect(await t.dataSource.getRepository(CtrItem).countBy({ name: 'int-veto' })).toBe(0);
      const rows = (await t.rows()).slice(before);
      expect(rows.map((row) => [row.action, row.kind, row.outcome])).toEqual([['ctr.intercepted', 'intent', 'failure']]);
      expect(rows[0]!.changes ?? []).toEqual([]);
      expect(rows[0]!.error).toMatchObject({ status: 409, message: 'vetoed at commit' });
      expect(await t.journal()).toBe(0);
    });

    it('the failure names the class of the error the interceptor threw, as for an error the handler throws', async () => {
      const before = (await t.rows()).length;
      const response = await t.request('/ctr-int', { method: 'POST', json: { name: 'int-veto-class', veto: true } });
      expect(response.status).toBe(409);
      const rows = (await t.rows()).slice(before);
      expect(rows.map((row) => row.error)).toEqual([{ name: 'ConflictException', status: 409, message: 'vetoed at commit' }]);
    });

    it('a route-level interceptor that throws after the handler: the failure names that error’s class', async () => {
      const before = (await t.rows()).length;
      const response = await t.request('/ctr-int-local', { method: 'POST' });
      expect(response.status).toBe(409);
      const rows = (await t.rows()).slice(before);
      expect(rows.map((row) => [row.action, row.outcome, row.error])).toEqual([
        ['ctr.intercepted.local', 'failure', { name: 'ConflictException', status: 409, message: 'refused after the handler' }],
      ]);
    });

    it('an undecorated route: its committed insert is one fallback change event, stored before the 2xx', async () => {
      const before = (await t.rows()).length;
      const response = await t.request('/ctr-int/plain', { method: 'POST', json: { name: 'int-plain' } });
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: number };
      const rows = (await t.rows()).slice(before);
      expect(rows.map((row) => [row.action, row.kind, row.source, row.targetId])).toEqual([['ctrItem.created', 'change', 'http', String(id)]]);
      expect(await t.journal()).toBe(0);
    });
  },
);
