import { Readable } from 'node:stream';
import { Body, Controller, Get, Post, Res, Sse, StreamableFile, type MessageEvent } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { interval, map, take, type Observable } from 'rxjs';
import { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { polled } from '../support/within.js';
import { databases } from '../support/test-database.js';
import { changesOf, CtrItem, contractAppFor, type ContractApp } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The part of Express's and Fastify's response the handlers use. */
interface RawResponse {
  status?(code: number): RawResponse;
  code?(code: number): RawResponse;
  json?(body: unknown): void;
  send(body?: unknown): void;
  redirect(a: number | string, b: number | string): void;
  header?(name: string, value: string): RawResponse;
}

const statusOf = (res: RawResponse, code: number): RawResponse => (res.status ? res.status(code) : res.code!(code));

@Controller('ctr-res')
class ResponsesController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  private save(name: string): Promise<CtrItem> {
    return this.dataSource.getRepository(CtrItem).save({ name });
  }

  @Post('created')
  @Audited('ctr.res.created')
  async created(@Body() body: { name: string }, @Res() res: RawResponse): Promise<void> {
    const item = await this.save(body.name);
    statusOf(res, 201).send({ id: item.id });
  }

  @Post('redirect')
  @Audited('ctr.res.redirect')
  async redirect(@Body() body: { name: string }, @Res() res: RawResponse): Promise<void> {
    await this.save(body.name);
    // Express: redirect(status, url); Fastify: redirect(url, status).
    if (!('raw' in res)) res.redirect(302, '/elsewhere');
    else res.redirect('/elsewhere', 302);
  }

  @Post('conflict')
  @Audited('ctr.res.conflict')
  async conflict(@Body() body: { name: string }, @Res() res: RawResponse): Promise<void> {
    await this.save(body.name);
    statusOf(res, 409).send({ message: 'already taken' });
  }

  @Get('file')
  @Audited('ctr.res.file')
  async file(): Promise<StreamableFile> {
    await this.save('file-download');
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 5; i++) {
        await sleep(20);
        yield Buffer.from(`line ${i}\n`);
      }
    }
    return new StreamableFile(Readable.from(chunks()), { type: 'text/plain' });
  }

  @Sse('sse')
  @Audited('ctr.res.sse')
  sse(): Observable<MessageEvent> {
    void this.save('sse-stream');
    return interval(30).pipe(
      take(3),
      map((n) => ({ data: { n } })),
    );
  }

  /** Writes, waits, writes again: the client is gone before the second write. */
  @Post('slow')
  @Audited('ctr.res.slow')
  async slow(@Body() body: { name: string }): Promise<{ ok: true }> {
    const repository = this.dataSource.getRepository(CtrItem);
    const item = await repository.save({ name: body.name });
    await sleep(600);
    await repository.update(item.id, { status: 'finished' });
    return { ok: true };
  }
}

const ADAPTERS = ['express', 'fastify'] as const;

describe.each(databases().flatMap((kind) => ADAPTERS.map((adapter) => [kind, adapter] as const)))('contract: every way a response ends, on %s over %s', (kind, adapter) => {
  let t!: ContractApp;
  contractAppFor(kind, { adapter, controllers: [ResponsesController] }, (app) => (t = app));

  const eventsOf = async (action: string) => (await t.rows()).filter((row) => row.action === action);

  it.each([
    ['created', 201, 'success'],
    ['redirect', 302, 'success'],
    ['conflict', 409, 'failure'],
  ] as const)('@Res() answering %s: the status the client sees, one intent with its change, outcome from the status', async (route, status, outcome) => {
    const name = `res-${route}`;
    const response = await t.request(`/ctr-res/${route}`, { method: 'POST', json: { name }, redirect: 'manual' });
    expect(response.status).toBe(status);
    await response.arrayBuffer();
    // Stored before the response was sent: no waiting.
    const events = await eventsOf(`ctr.res.${route}`);
    expect(events.map((row) => [row.kind, row.outcome])).toEqual([['intent', outcome]]);
    expect(changesOf(events, 'CtrItem').map((change) => (change.fields['name'] as { to: string }).to)).toEqual([name]);
    if (outcome === 'failure') expect(events[0]!.error).toMatchObject({ status });
    else expect(events[0]!.error ?? null).toBeNull();
    expect((await t.rows()).filter((row) => row.kind === 'change')).toEqual([]);
    expect(await t.journal()).toBe(0);
  });

  it('StreamableFile of a stream: the whole body, and one success event with its change', async () => {
    const response = await t.request('/ctr-res/file');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('line 0\nline 1\nline 2\nline 3\nline 4\n');
    const events = await polled(() => eventsOf('ctr.res.file'), (rows) => rows.length > 0, 2000);
    expect(events.map((row) => [row.kind, row.outcome])).toEqual([['intent', 'success']]);
    expect(changesOf(events, 'CtrItem')).toHaveLength(1);
  });

  it('SSE: three messages, then one success event holding the write', async () => {
    const response = await t.request('/ctr-res/sse');
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text.match(/^data: /gm)).toHaveLength(3);
    const events = await polled(() => eventsOf('ctr.res.sse'), (rows) => rows.length > 0, 2000);
    expect(events.map((row) => [row.kind, row.outcome])).toEqual([['intent', 'success']]);
    expect(changesOf(events, 'CtrItem').map((change) => (change.fields['name'] as { to: string }).to)).toEqual(['sse-stream']);
  });

  it('a client that leaves mid-request: the handler’s outcome as it was, both writes in its one event', async () => {
    const name = `slow-${adapter}`;
    const controller = new AbortController();
    const pending = t.request('/ctr-res/slow', { method: 'POST', json: { name }, signal: controller.signal }).catch((error: unknown) => error);
    await expect.poll(() => t.dataSource.getRepository(CtrItem).countBy({ name }), { timeout: 3000, interval: 20 }).toBe(1);
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    const events = await polled(() => eventsOf('ctr.res.slow'), (rows) => rows.length > 0, 5000);
    expect(events.map((row) => [row.kind, row.outcome])).toEqual([['intent', 'success']]);
    expect(changesOf(events, 'CtrItem')).toEqual([
      expect.objectContaining({ operation: 'insert', fields: expect.objectContaining({ name: { from: null, to: name }, status: { from: null, to: 'finished' } }) }),
    ]);
    expect((await t.rows()).filter((row) => row.kind === 'change')).toEqual([]);
    await polled(() => t.journal(), (n) => n === 0, 2000);
    expect(await t.journal()).toBe(0);
  });
});
