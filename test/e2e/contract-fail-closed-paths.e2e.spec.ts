import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { Body, Controller, Get, Injectable, Post, Query, Res, Sse, StreamableFile, type MessageEvent } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { interval, map, take, type Observable } from 'rxjs';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditService } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { CtrItem, startContractApp, type ContractApp } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The part of Express's response and Fastify's reply the handler uses. */
interface RawResponse {
  status(code: number): RawResponse;
  send(body: unknown): void;
}

@Injectable()
class PoisonWriter {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @Audited('ctr.fcp.nested')
  async write(name: string): Promise<CtrItem> {
    return this.dataSource.getRepository(CtrItem).save({ name });
  }
}

@Controller('ctr-fcp')
class FailClosedPathsController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly writer: PoisonWriter,
    private readonly audit: AuditService,
  ) {}

  @Post('res')
  @Audited('ctr.fcp.res')
  async raw(@Body() body: { name: string }, @Res() res: RawResponse): Promise<void> {
    const item = await this.dataSource.getRepository(CtrItem).save({ name: body.name });
    res.status(201).send({ id: item.id, secret: 'handler body' });
  }

  @Get('file')
  @Audited('ctr.fcp.file')
  async file(@Query('name') name: string): Promise<StreamableFile> {
    await this.dataSource.getRepository(CtrItem).save({ name });
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 4; i++) {
        await sleep(20);
        yield Buffer.from(`line ${i}\n`);
      }
    }
    return new StreamableFile(Readable.from(chunks()), { type: 'text/plain' });
  }

  @Sse('sse')
  @Audited('ctr.fcp.sse')
  sse(@Query('name') name: string): Observable<MessageEvent> {
    void this.dataSource.getRepository(CtrItem).save({ name });
    return interval(30).pipe(
      take(3),
      map((n) => ({ data: { n } })),
    );
  }

  /** Undecorated, calling an audited provider method whose event cannot be stored. */
  @Post('nested')
  async nested(@Body() body: { name: string }): Promise<{ ok: true }> {
    await this.writer.write(body.name);
    return { ok: true };
  }

  /** Undecorated, with a runAs job whose change cannot be recorded. */
  @Post('run-as')
  async runAs(@Body() body: { name: string }): Promise<{ ok: true }> {
    await this.audit.runAs({ type: 'service', id: 'importer' }, () => this.dataSource.getRepository(CtrItem).save({ name: body.name }));
    return { ok: true };
  }
}

/** A trigger that refuses every `audit_log` row whose changes mention "poison". */
async function refusePoisonedEvents(db: TestDatabase, dataSource: DataSource): Promise<void> {
  if (db.kind === 'sqlite') {
    await dataSource.query(`CREATE TRIGGER ctr_refuse BEFORE INSERT ON audit_log FOR EACH ROW WHEN NEW.changes LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'audit refused'); END`);
  } else if (db.kind === 'mariadb') {
    await dataSource.query(
      `CREATE TRIGGER ctr_refuse BEFORE INSERT ON audit_log FOR EACH ROW BEGIN IF NEW.changes LIKE '%poison%' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit refused'; END IF; END`,
    );
  } else {
    const schema = (db.options as { schema: string }).schema;
    await dataSource.query(
      `CREATE FUNCTION "${schema}".ctr_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.changes::text LIKE '%poison%' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$`,
    );
    await dataSource.query(`CREATE TRIGGER ctr_refuse BEFORE INSERT ON "${schema}".audit_log FOR EACH ROW EXECUTE FUNCTION "${schema}".ctr_refuse()`);
  }
}

/** How the client saw the response: its status and whole body, or the connection broken. */
async function seen(t: ContractApp, path: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status?: number; body?: string; broken?: string }> {
  let status: number | undefined;
  try {
    const response = await t.request(path, init);
    status = response.status;
    return { status, body: await response.text() };
  } catch (error) {
    return { status, broken: String((error as Error & { cause?: Error }).cause?.message ?? error) };
  }
}

/** The raw bytes a GET got, and how its connection ended: 'end' (an orderly close, FIN) or the socket error (a reset). */
function rawGet(url: string, path: string, version = '1.1'): Promise<{ text: string; ended: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.write(`GET ${path} HTTP/${version}\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let text = '';
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), 10_000);
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('end', () => {
      clearTimeout(timer);
      resolve({ text, ended: 'end' });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ text, ended: error.code ?? error.message });
    });
  });
}

const ADAPTERS = ['express', 'fastify'] as const;

describe.each(databases().flatMap((kind) => ADAPTERS.map((adapter) => [kind, adapter] as const)))('contract: fail-closed on every path of an answer, on %s over %s', (kind, adapter) => {
  let db: TestDatabase;
  let t: ContractApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, adapter, controllers: [FailClosedPathsController], providers: [PoisonWriter] });
    await refusePoisonedEvents(db, t.dataSource);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it('@Res() answering 201: the client gets a 500 without the handler’s body', async () => {
    const result = await seen(t, '/ctr-fcp/res', { method: 'POST', json: { name: 'poison-res' } });
    expect(result.status).toBe(500);
    expect(result.body).not.toContain('handler body');
  });

  it('a StreamableFile stream: a 500, or the connection broken — never a whole 2xx body', async () => {
    const result = await seen(t, '/ctr-fcp/file?name=poison-file');
    if (result.status === 500) return;
    expect(result.broken).toBeDefined();
  });

  it.each([
    ['a StreamableFile stream', '/ctr-fcp/file?name=poison-file-raw'],
    ['SSE', '/ctr-fcp/sse?name=poison-sse-raw'],
  ])('%s whose headers went out: the connection is reset (not an orderly close), without the final chunk', async (_, path) => {
    const { text, ended } = await rawGet(t.url, path);
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text.endsWith('\r\n0\r\n\r\n')).toBe(false);
    expect(ended).toBe('ECONNRESET');
  });

  it('SSE: the stream breaks rather than ends', async () => {
    const result = await seen(t, '/ctr-fcp/sse?name=poison-sse');
    if (result.status === 500) return;
    expect(result.broken).toBeDefined();
  });

  it('HTTP/1.0 (a body that ends with the connection): a StreamableFile stream is held back and answered 500', async () => {
    const { text } = await rawGet(t.url, '/ctr-fcp/file?name=poison-file-10', '1.0');
    expect(text).toMatch(/^HTTP\/1\.[01] 500/);
    expect(text).not.toContain('line 0');
  });

  it('HTTP/1.0 SSE, whose headers Nest flushes: its messages went out, and only a reset marks it cut', async () => {
    const { text, ended } = await rawGet(t.url, '/ctr-fcp/sse?name=poison-sse-10', '1.0');
    expect(text).toMatch(/^HTTP\/1\.[01] 200/);
    expect(ended).toBe('ECONNRESET');
  });

  it('an undecorated route whose nested @Audited call cannot store its event: 500', async () => {
    const result = await seen(t, '/ctr-fcp/nested', { method: 'POST', json: { name: 'poison-nested' } });
    expect(result.status).toBe(500);
  });

  it('an undecorated route whose runAs job cannot store its events: 500', async () => {
    const result = await seen(t, '/ctr-fcp/run-as', { method: 'POST', json: { name: 'poison-runas' } });
    expect(result.status).toBe(500);
  });
});
