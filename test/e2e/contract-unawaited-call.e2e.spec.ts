import { randomUUID } from 'node:crypto';
import { Body, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp, HeaderUserGuard } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class SlowWorker {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Writes at once, then again after the request that called it has answered. */
  @Audited('ctr.unawaited.worker')
  async run(tag: string): Promise<void> {
    const repository = this.dataSource.getRepository(CtrItem);
    await repository.save({ name: `${tag}-early` });
    await sleep(400);
    await repository.save({ name: `${tag}-late` });
  }
}

@Controller('ctr-unawaited')
@UseGuards(HeaderUserGuard)
class UnawaitedController {
  constructor(private readonly worker: SlowWorker) {}

  @Post()
  @Audited('ctr.unawaited.request')
  async start(@Body() body: { tag: string }): Promise<{ ok: true }> {
    void this.worker.run(body.tag);
    await sleep(100);
    return { ok: true };
  }
}

describe.each(databases())('contract: an @Audited call the request did not await, on %s', (kind) => {
  let t!: ContractApp;
  contractAppFor(kind, { controllers: [UnawaitedController], providers: [SlowWorker, HeaderUserGuard] }, (app) => (t = app));

  it('what it committed before the request ended stays the request’s; what it commits after is in its own event, the system’s, with originRequestId', async () => {
    const requestId = randomUUID();
    const response = await t.request('/ctr-unawaited', { method: 'POST', json: { tag: 'u1' }, headers: { 'x-user': 'ada', 'x-request-id': requestId } });
    expect(response.status).toBe(201);

    const rows = await polled(() => t.rows(), (all) => all.some((row) => row.action === 'ctr.unawaited.worker'), 5000);
    await sleep(300);
    const all = await t.rows();
    expect(all.length).toBe(rows.length);
    const holder = (name: string) => all.filter((row) => changesOf([row], 'CtrItem').some((change) => (change.fields['name'] as { to?: string }).to === name));

    // Each insert is recorded once.
    expect(holder('u1-early')).toHaveLength(1);
    expect(holder('u1-late')).toHaveLength(1);
    const early = holder('u1-early')[0]!;
    expect([early.actorType, early.actorId, early.requestId]).toEqual(['user', 'ada', requestId]);
    const late = holder('u1-late')[0]!;
    expect([late.action, late.actorType, late.source]).toEqual(['ctr.unawaited.worker', 'system', 'system']);
    expect(late.requestId).not.toBe(requestId);
    expect(late.context).toMatchObject({ originRequestId: requestId });

    const request = all.filter((row) => row.action === 'ctr.unawaited.request');
    expect(request.map((row) => [row.actorId, row.requestId, row.outcome])).toEqual([['ada', requestId, 'success']]);
    // One worker event (its late part), not the user's.
    expect(all.filter((row) => row.action === 'ctr.unawaited.worker').map((row) => row.actorType)).toEqual(['system']);
    expect(await t.journal()).toBe(0);
  });
});
