import { connect, type Socket } from 'node:net';
import type { Server } from 'node:http';
import { Controller, Get, Query, Res } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import { Audited } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { CtrItem, startContractApp, type ContractApp } from './contract-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const BODY = Buffer.alloc(8 * 1024 * 1024, 'x');

interface RawResponse {
  setHeader(name: string, value: string): void;
  write(chunk: Buffer): boolean;
  end(): void;
}

@Controller('unread')
class UnreadController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** 8 MB written at once, without waiting for the client (its bytes queue up), then a change whose event is refused. */
  @Get()
  @Audited('unread.streamed')
  async stream(@Query('name') name: string, @Res() res: RawResponse): Promise<void> {
    res.setHeader('content-type', 'text/plain');
    res.write(BODY);
    await this.dataSource.getRepository(CtrItem).save({ name });
    res.end();
  }
}

/** A GET whose client never reads: its socket is paused at once. */
function unreadGet(url: string, path: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.pause();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      resolve(socket);
    });
    socket.on('error', () => undefined);
  });
}

const connections = (server: Server) => new Promise<number>((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count))));

describe.each(databases().filter((kind) => kind === 'sqlite'))('fail-closed on a stream whose client does not read, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: ContractApp | undefined;
  const sockets: Socket[] = [];

  const start = async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, controllers: [UnreadController] });
    await t.dataSource.query(`CREATE TRIGGER unread_refuse BEFORE INSERT ON audit_log FOR EACH ROW WHEN NEW.changes LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'audit refused'); END`);
    return t;
  };
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  it('three such clients: every connection is reset within the bound (about 1 s), none is left open', async () => {
    const app = await start();
    const server = app.app.getHttpServer() as Server;
    for (let i = 0; i < 3; i++) sockets.push(await unreadGet(app.url, `/unread?name=poison-${i}`));
    await sleep(300);
    const began = Date.now();
    let open = await connections(server);
    while (open > 0 && Date.now() - began < 5_000) {
      await sleep(50);
      open = await connections(server);
    }
    expect(open).toBe(0);
    expect(Date.now() - began).toBeLessThan(2_000);
  });

  it('app.close() while a reset waits for an unread client: the app closes within the bound', async () => {
    const app = await start();
    sockets.push(await unreadGet(app.url, '/unread?name=poison-close'));
    await sleep(300);
    const began = Date.now();
    await app.close();
    t = undefined;
    expect(Date.now() - began).toBeLessThan(2_500);
  });
});
