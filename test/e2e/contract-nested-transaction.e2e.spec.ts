import { Body, ConflictException, Controller, Injectable, Post, Req, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditService } from '../../lib/index.js';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp, HeaderUserGuard } from './contract-app.js';

/** A provider method audited under an action of its own. */
@Injectable()
class NestedWriter {
  @Audited('ctr.inner')
  async write(manager: EntityManager, name: string): Promise<CtrItem> {
    return manager.save(CtrItem, manager.create(CtrItem, { name }));
  }

  /** Writes, then fails: its caller catches the error and commits. */
  @Audited('ctr.inner.failing')
  async writeThenFail(manager: EntityManager, name: string): Promise<never> {
    await manager.save(CtrItem, manager.create(CtrItem, { name }));
    throw new StockError('out of stock');
  }
}

class StockError extends Error {
  override name = 'StockError';
}

@Controller('ctr-tx')
@UseGuards(HeaderUserGuard)
class NestedTransactionController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly nested: NestedWriter,
    private readonly audit: AuditService,
  ) {}

  /** Two writes of its own and a nested audited write, in one transaction. */
  @Post('nested')
  @Audited('ctr.outer')
  async nestedWrite(@Body() body: { tag: string; fail?: boolean }): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      await manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-a` }));
      await manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-b` }));
      await this.nested.write(manager, `${body.tag}-c`);
      if (body.fail) throw new ConflictException('outer refused');
    });
    return { ok: true };
  }

  /** A nested audited call that writes and throws, caught; a savepoint rolled back; the transaction commits. */
  @Post('caught')
  @Audited('ctr.outer.caught')
  async caught(@Body() body: { tag: string }): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      await manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-a` }));
      await this.nested.writeThenFail(manager, `${body.tag}-c`).catch(() => undefined);
      await manager
        .transaction(async (inner) => {
          await inner.save(CtrItem, inner.create(CtrItem, { name: `${body.tag}-savepoint` }));
          throw new Error('undo the savepoint');
        })
        .catch(() => undefined);
    });
    return { ok: true };
  }

  /** Two nested audited calls at once on the same transaction, and a queued job carrying the request's actor and id. */
  @Post('parallel')
  @Audited('ctr.outer.parallel')
  async parallel(@Body() body: { tag: string }): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      await Promise.all([this.nested.write(manager, `${body.tag}-x`), this.nested.write(manager, `${body.tag}-y`), manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-own` }))]);
    });
    return { ok: true };
  }

  @Post('queued')
  @Audited('ctr.outer.queued')
  async queued(@Body() body: { tag: string }, @Req() request: { headers: Record<string, string | undefined> }): Promise<{ ok: true }> {
    const requestId = request.headers['x-request-id'];
    await this.audit.runAs({ type: 'user', id: 'queued-ada' }, () => this.dataSource.getRepository(CtrItem).save({ name: `${body.tag}-job` }), { requestId, source: 'worker' });
    return { ok: true };
  }

  /** A write of its own and a `runAs` system job's write, in one transaction. */
  @Post('run-as')
  @Audited('ctr.outer.runas')
  async runAsWrite(@Body() body: { tag: string; fail?: boolean }): Promise<{ ok: true }> {
    await this.dataSource.transaction(async (manager) => {
      await manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-a` }));
      await this.audit.runAs({ type: 'system', id: 'sweeper' }, () => manager.save(CtrItem, manager.create(CtrItem, { name: `${body.tag}-sys` })));
      if (body.fail) throw new ConflictException('outer refused');
    });
    return { ok: true };
  }
}

describe.each(databases())('contract: a nested unit inside the request’s transaction, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [NestedTransactionController], providers: [NestedWriter, HeaderUserGuard] }, (app) => (t = app));

  const named = async (tag: string) => {
    const rows = await t.rows();
    const names = (row: (typeof rows)[number]) =>
      (row.changes ?? []).map((change) => (change.fields as Record<string, { to?: unknown }>)['name']?.to).filter((name) => typeof name === 'string' && name.startsWith(tag));
    return { rows, names };
  };

  it('commit: the outer event holds its two inserts, the nested event its one; nothing as fallback, nothing twice', async () => {
    const tag = 'commit';
    const response = await t.request('/ctr-tx/nested', { method: 'POST', json: { tag }, headers: { 'x-user': 'ada' } });
    expect(response.status).toBe(201);

    const { rows, names } = await named(tag);
    const touching = rows.filter((row) => names(row).length > 0 || row.action.startsWith('ctr.'));
    expect(touching.map((row) => [row.action, row.kind, row.outcome]).sort()).toEqual([
      ['ctr.inner', 'intent', 'success'],
      ['ctr.outer', 'intent', 'success'],
    ]);
    const outer = touching.find((row) => row.action === 'ctr.outer')!;
    const inner = touching.find((row) => row.action === 'ctr.inner')!;
    expect(names(outer).sort()).toEqual([`${tag}-a`, `${tag}-b`]);
    expect(names(inner)).toEqual([`${tag}-c`]);
    // Both are the request's: same user, same request id, source http.
    for (const row of [outer, inner]) {
      expect([row.actorType, row.actorId, row.source]).toEqual(['user', 'ada', 'http']);
      expect(row.requestId).toBe(response.headers.get('x-request-id'));
    }
    expect(changesOf(rows, 'CtrItem')).toHaveLength(3);
    expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
    expect(await t.journal()).toBe(0);
  });

  it('rollback: no event holds a change; both intents are failures; the client gets the outer error', async () => {
    const tag = 'rollback';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/nested', { method: 'POST', json: { tag, fail: true }, headers: { 'x-user': 'ada' } });
    expect(response.status).toBe(409);
    expect(await response.json()).toMatchObject({ message: 'outer refused' });
    expect(await t.dataSource.getRepository(CtrItem).count({ where: [{ name: `${tag}-a` }, { name: `${tag}-c` }] })).toBe(0);

    const rows = (await t.rows()).slice(before);
    expect(rows.map((row) => [row.action, row.kind, row.outcome]).sort()).toEqual([
      ['ctr.inner', 'intent', 'failure'],
      ['ctr.outer', 'intent', 'failure'],
    ]);
    for (const row of rows) expect(row.changes ?? []).toEqual([]);
    expect(rows.find((row) => row.action === 'ctr.outer')!.error).toMatchObject({ name: 'ConflictException', status: 409 });
    // The nested method succeeded, then its transaction rolled back.
    expect(rows.find((row) => row.action === 'ctr.inner')!.error).toMatchObject({ name: 'TransactionRolledBack' });
    expect(await t.journal()).toBe(0);
  });

  it('a nested @Audited call that wrote then threw, caught by a transaction that commits: a failure holding its committed insert; a rolled-back savepoint in no event', async () => {
    const tag = 'caught';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/caught', { method: 'POST', json: { tag }, headers: { 'x-user': 'ada' } });
    expect(response.status).toBe(201);
    expect(await t.dataSource.getRepository(CtrItem).countBy({ name: `${tag}-savepoint` })).toBe(0);
    expect(await t.dataSource.getRepository(CtrItem).countBy({ name: `${tag}-c` })).toBe(1);

    const rows = (await t.rows()).slice(before);
    expect(rows.map((row) => [row.action, row.kind, row.outcome]).sort()).toEqual([
      ['ctr.inner.failing', 'intent', 'failure'],
      ['ctr.outer.caught', 'intent', 'success'],
    ]);
    const names = (action: string) =>
      changesOf(
        rows.filter((row) => row.action === action),
        'CtrItem',
      ).map((change) => (change.fields['name'] as { to: string }).to);
    expect(names('ctr.outer.caught')).toEqual([`${tag}-a`]);
    expect(names('ctr.inner.failing')).toEqual([`${tag}-c`]);
    expect(rows.find((row) => row.action === 'ctr.inner.failing')!.error).toMatchObject({ name: 'StockError' });
    expect(await t.journal()).toBe(0);
  });

  it('two nested @Audited calls at once on one transaction: each event holds its own insert, the outer its own', async () => {
    const tag = 'par';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/parallel', { method: 'POST', json: { tag }, headers: { 'x-user': 'ada' } });
    expect(response.status).toBe(201);
    const rows = (await t.rows()).slice(before);
    const byAction = rows.map((row) => [row.action, changesOf([row], 'CtrItem').map((change) => (change.fields['name'] as { to: string }).to)] as const);
    expect(byAction.filter(([action]) => action === 'ctr.inner').map(([, names]) => names).sort()).toEqual([[`${tag}-x`], [`${tag}-y`]]);
    expect(byAction.filter(([action]) => action === 'ctr.outer.parallel')).toEqual([['ctr.outer.parallel', [`${tag}-own`]]]);
    expect(rows).toHaveLength(3);
  });

  it('runAs given the request’s id and a source: its change carries them, with the job’s actor', async () => {
    const tag = 'queued';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/queued', { method: 'POST', json: { tag }, headers: { 'x-user': 'ada', 'x-request-id': 'req-queued-1' } });
    expect(response.status).toBe(201);
    const rows = (await t.rows()).slice(before);
    const job = rows.find((row) => changesOf([row], 'CtrItem').length > 0)!;
    expect([job.kind, job.actorType, job.actorId, job.source, job.requestId]).toEqual(['change', 'user', 'queued-ada', 'worker', 'req-queued-1']);
    const outer = rows.find((row) => row.action === 'ctr.outer.queued')!;
    expect([outer.actorId, outer.requestId, outer.changes ?? []]).toEqual(['ada', 'req-queued-1', []]);
  });

  it('runAs({ type: system }) inside the request’s transaction: its insert is the system’s, once; the request’s is the user’s', async () => {
    const tag = 'runas-commit';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/run-as', { method: 'POST', json: { tag }, headers: { 'x-user': 'grace' } });
    expect(response.status).toBe(201);

    const rows = (await t.rows()).slice(before);
    const changes = changesOf(rows, 'CtrItem');
    expect(changes.map((change) => (change.fields['name'] as { to: string }).to).sort()).toEqual([`${tag}-a`, `${tag}-sys`]);
    const holder = (name: string) => rows.find((row) => (row.changes ?? []).some((change) => (change.fields['name'] as { to?: string } | undefined)?.to === name))!;
    const own = holder(`${tag}-a`);
    expect([own.action, own.kind, own.actorType, own.actorId]).toEqual(['ctr.outer.runas', 'intent', 'user', 'grace']);
    const job = holder(`${tag}-sys`);
    expect(job.action).not.toBe('ctr.outer.runas');
    expect([job.actorType, job.actorId, job.source]).toEqual(['system', 'sweeper', 'job']);
    expect(rows.filter((row) => row.action === 'ctr.outer.runas')).toHaveLength(1);
    expect(await t.journal()).toBe(0);
  });

  it('runAs inside the request’s transaction that then rolls back: no event holds a change', async () => {
    const tag = 'runas-rollback';
    const before = (await t.rows()).length;
    const response = await t.request('/ctr-tx/run-as', { method: 'POST', json: { tag, fail: true }, headers: { 'x-user': 'grace' } });
    expect(response.status).toBe(409);
    const rows = (await t.rows()).slice(before);
    expect(changesOf(rows, 'CtrItem')).toEqual([]);
    expect(rows.map((row) => [row.action, row.outcome])).toEqual([['ctr.outer.runas', 'failure']]);
    expect(await t.journal()).toBe(0);
  });
});
