import { randomUUID } from 'node:crypto';
import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited, AuditService } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp, HeaderUserGuard } from './contract-app.js';

@Injectable()
class Stamper {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Audited('ctr.late.stamped')
  async stamp(id: number): Promise<void> {
    await this.dataSource.getRepository(CtrItem).update(id, { name: `stamped-${id}` });
  }
}

@Controller('ctr-late')
@UseGuards(HeaderUserGuard)
class LateWorkController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly stamper: Stamper,
  ) {}

  /** Answers at once; 200 ms later a timer it left writes, logs and calls an audited method. */
  @Post()
  @Audited('ctr.late.request')
  async start(@Body() body: { name: string }): Promise<{ id: number }> {
    const repository = this.dataSource.getRepository(CtrItem);
    const item = await repository.save({ name: body.name });
    setTimeout(() => {
      void (async () => {
        await repository.update(item.id, { status: 'late' });
        await this.audit.log({ action: 'ctr.late.logged', target: { type: 'Note', id: String(item.id) } });
        await this.stamper.stamp(item.id);
      })();
    }, 200);
    return { id: item.id };
  }
}

describe.each(databases())('contract: work a request leaves running after its response, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [LateWorkController], providers: [Stamper, HeaderUserGuard] }, (app) => (t = app));

  it('a timer’s write, log() and @Audited call are the system’s, with the request’s id in context.originRequestId — never the user’s', async () => {
    const requestId = randomUUID();
    const response = await t.request('/ctr-late', { method: 'POST', json: { name: 'late-one' }, headers: { 'x-user': 'ada', 'x-request-id': requestId } });
    expect(response.status).toBe(201);
    expect(response.headers.get('x-request-id')).toBe(requestId);
    const { id } = (await response.json()) as { id: number };

    const rows = await polled(() => t.rows(), (all) => all.some((row) => row.action === 'ctr.late.stamped'), 5000);
    const request = rows.filter((row) => row.action === 'ctr.late.request');
    expect(request.map((row) => [row.actorType, row.actorId, row.requestId, row.outcome])).toEqual([['user', 'ada', requestId, 'success']]);
    expect(changesOf(request, 'CtrItem')).toEqual([expect.objectContaining({ operation: 'insert', fields: expect.objectContaining({ status: { from: null, to: 'new' } }) })]);

    const late = rows.filter((row) => row.action !== 'ctr.late.request');
    expect(late.map((row) => row.action).sort()).toEqual(['ctr.late.logged', 'ctr.late.stamped', 'ctrItem.updated']);
    for (const row of late) {
      expect([row.action, row.actorType, row.actorId ?? null, row.source]).toEqual([row.action, 'system', null, 'system']);
      expect(row.context).toMatchObject({ originRequestId: requestId });
    }
    const fallback = late.find((row) => row.action === 'ctrItem.updated')!;
    expect(changesOf([fallback], 'CtrItem')).toEqual([expect.objectContaining({ id: String(id), operation: 'update', fields: { status: { from: 'new', to: 'late' } } })]);
    const stamped = late.find((row) => row.action === 'ctr.late.stamped')!;
    expect(stamped.requestId).not.toBe(requestId);
    expect(changesOf([stamped], 'CtrItem')).toEqual([expect.objectContaining({ fields: { name: { from: 'late-one', to: `stamped-${id}` } } })]);
    expect(rows.filter((row) => row.actorId === 'ada')).toHaveLength(1);
    await polled(() => t.journal(), (n) => n === 0, 2000);
    expect(await t.journal()).toBe(0);
  });
});
