import { randomUUID } from 'node:crypto';
import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { createTestDatabase, databases, sharedDatabase, type TestDatabase } from '../support/test-database.js';
import { changesOf, CtrItem, startContractApp, type ContractApp, HeaderUserGuard } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Controller('ctr-open')
@UseGuards(HeaderUserGuard)
class OpenTransactionController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Answers with its transaction still open; commits (or rolls back) it 3 s later. */
  @Post()
  @Audited('ctr.open.left')
  async leave(@Body() body: { name: string; rollback?: boolean }): Promise<{ ok: true }> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    await runner.manager.save(CtrItem, runner.manager.create(CtrItem, { name: body.name }));
    setTimeout(() => {
      void (async () => {
        if (body.rollback) await runner.rollbackTransaction();
        else await runner.commitTransaction();
        await runner.release();
      })();
    }, 3000);
    return { ok: true };
  }

  /** Writes, then waits: the app shuts down meanwhile. */
  @Post('slow')
  @Audited('ctr.open.slow')
  async slow(@Body() body: { name: string }): Promise<{ ok: true }> {
    await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    await sleep(800);
    return { ok: true };
  }
}

describe.each(databases().filter((kind) => kind !== 'sqlite'))('contract: a handler that answers with its transaction still open, on %s', (kind) => {
  let db: TestDatabase;
  let t: ContractApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, controllers: [OpenTransactionController], providers: [HeaderUserGuard] });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('the response waits at most about 2 s; the later commit is recorded once, as the unit’s fallback event, with its actor and request id', { timeout: 30_000 }, async () => {
    const requestId = randomUUID();
    const started = Date.now();
    const response = await t.request('/ctr-open', { method: 'POST', json: { name: 'open-commit' }, headers: { 'x-user': 'ada', 'x-request-id': requestId } });
    expect(response.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(2900);

    const rows = await polled(
      () => t.rows(),
      (all) => changesOf(all, 'CtrItem').length > 0,
      8000,
    );
    await sleep(300);
    const mine = (await t.rows()).filter((row) => row.requestId === requestId);
    expect(mine.map((row) => [row.action, row.kind]).sort()).toEqual([
      ['ctr.open.left', 'intent'],
      ['ctrItem.created', 'change'],
    ]);
    const fallback = mine.find((row) => row.kind === 'change')!;
    expect([fallback.actorType, fallback.actorId, fallback.source]).toEqual(['user', 'ada', 'http']);
    expect(changesOf(rows, 'CtrItem')).toHaveLength(1);
    await polled(() => t.journal(), (n) => n === 0, 3000);
    expect(await t.journal()).toBe(0);
  });

  it('the later rollback: the change is in no record', { timeout: 30_000 }, async () => {
    const requestId = randomUUID();
    const response = await t.request('/ctr-open', { method: 'POST', json: { name: 'open-rollback', rollback: true }, headers: { 'x-user': 'ada', 'x-request-id': requestId } });
    expect(response.status).toBe(201);
    await sleep(4000);
    const mine = (await t.rows()).filter((row) => row.requestId === requestId);
    expect(mine.map((row) => row.action)).toEqual(['ctr.open.left']);
    expect(changesOf(mine, 'CtrItem')).toEqual([]);
    expect(await t.dataSource.getRepository(CtrItem).countBy({ name: 'open-rollback' })).toBe(0);
    expect(await t.journal()).toBe(0);
  });
});

describe.each(databases())('contract: the app closed while a request is in flight, on %s', (kind) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await sharedDatabase(kind);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('the request’s event is stored before the data source closes', { timeout: 30_000 }, async () => {
    const t = await startContractApp({ db, controllers: [OpenTransactionController], providers: [HeaderUserGuard] });
    const pending = t.request('/ctr-open/slow', { method: 'POST', json: { name: 'closing' }, headers: { 'x-user': 'ada' } }).then(
      (response) => response.status,
      (error: unknown) => error,
    );
    await expect.poll(() => t.dataSource.getRepository(CtrItem).countBy({ name: 'closing' }), { timeout: 3000, interval: 20 }).toBe(1);
    await t.close();
    const answered = await pending;

    const again = await startContractApp({ db });
    try {
      const rows = (await again.rows()).filter((row) => row.action === 'ctr.open.slow');
      expect(rows.map((row) => [row.kind, row.actorId])).toEqual([['intent', 'ada']]);
      if (answered === 201) expect(rows[0]!.outcome).toBe('success');
      expect(changesOf(rows, 'CtrItem')).toHaveLength(1);
      expect(await again.journal()).toBe(0);
    } finally {
      await again.close();
    }
  });
});
