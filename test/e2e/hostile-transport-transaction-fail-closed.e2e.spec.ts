import { APP_INTERCEPTOR } from '@nestjs/core';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { WsAdapter } from '@nestjs/platform-ws';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AuditJournalEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import {
  CREATE_COMMITTED_LATER,
  CREATE_IN_TRANSACTION,
  LATE_COMMIT_MS,
  LateCommitMessagesController,
  MessageTransactionInterceptor,
  PROBE_EVENT,
  TransactionalGateway,
  TransactionalMessagesController,
} from '../app/hostile-transactional-calls.js';
import { Order } from '../app/order.entity.js';
import { freePort } from '../support/broker-probe.js';
import { moveAuditLog } from '../support/audit-log-away.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

/** What a call's client got: the reply, or the error (the RPC error's message, the WebSocket exception frame's data). */
type Answer = { reply: unknown } | { error: unknown };

describe.each(databases())('message handlers inside an app-level transaction interceptor, fail-closed, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let tcp: ClientProxy;
  let ws: WebSocket;
  /**
   * Whether an app-level interceptor wraps a gateway's events. NestJS 11's gateways get no
   * global interceptors (its SocketModule builds their interceptor context without the
   * application config): there the WebSocket half of these cases does not exist.
   */
  let APP_INTERCEPTORS_WRAP_GATEWAYS = false;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const tcpPort = await freePort();
    t = await createTestApp({
      db,
      adapter: 'express',
      controllers: [TransactionalMessagesController, LateCommitMessagesController],
      providers: [TransactionalGateway, { provide: APP_INTERCEPTOR, useClass: MessageTransactionInterceptor }],
      // The retry pass runs every recoverAfter / 2: soon after storage is back.
      audit: { recoverAfter: 1_000 },
      configure: async (app) => {
        app.useWebSocketAdapter(new WsAdapter(app));
        app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } }, { inheritAppConfig: true });
        await app.startAllMicroservices();
      },
    });
    tcp = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    await tcp.connect();
    ws = new WebSocket(`${t.url.replace(/^http/, 'ws')}/tx-ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    APP_INTERCEPTORS_WRAP_GATEWAYS = await new Promise<boolean>((resolve) => {
      ws.once('message', (raw) => resolve((JSON.parse(String(raw)) as { data: unknown }).data === true));
      ws.send(JSON.stringify({ event: PROBE_EVENT, data: {} }));
    });
  });
  afterAll(async () => {
    ws?.close();
    await tcp?.close();
    await t?.close();
    await db?.drop();
  });

  const rpcCall = (note: string): Promise<Answer> =>
    firstValueFrom(tcp.send(CREATE_IN_TRANSACTION, { note })).then(
      (reply: unknown) => ({ reply }),
      (error: unknown) => ({ error: String((error as { message?: unknown })?.message ?? error) }),
    );
  const wsCall = (note: string): Promise<Answer> =>
    new Promise((resolve) => {
      ws.once('message', (raw) => {
        const frame = JSON.parse(String(raw)) as { event: string; data: unknown };
        resolve(frame.event === 'exception' ? { error: frame.data } : { reply: frame });
      });
      ws.send(JSON.stringify({ event: 'order.create', data: { note } }));
    });

  /** `audit_log` under another name (`away`) or its own; the domain tables are untouched. */
  const renameAuditLog = (away: boolean): Promise<void> => moveAuditLog(t.dataSource, db, away);

  it('storage works: each reply arrives after its event is stored, claiming the change the transaction committed', async () => {
    await t.clearAudit();
    const rpc = await rpcCall('tx-rpc-ok');
    const rowsAtRpcReply = await t.rows();
    const rpcOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'tx-rpc-ok' });
    expect(rpc).toEqual({ reply: { id: rpcOrder.id } });
    expect(rowsAtRpcReply.map((row) => [row.source, row.action, row.outcome, row.changes?.map((change) => change.id)])).toEqual([
      ['rpc', 'order.created', 'success', [String(rpcOrder.id)]],
    ]);
    if (!APP_INTERCEPTORS_WRAP_GATEWAYS) return;

    const wsAnswer = await wsCall('tx-ws-ok');
    const rowsAtWsReply = await t.rows();
    const wsOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'tx-ws-ok' });
    expect(wsAnswer).toEqual({ reply: { event: 'order.created', data: { id: wsOrder.id } } });
    expect(rowsAtWsReply.map((row) => [row.source, row.action, row.outcome, row.changes?.map((change) => change.id)])).toEqual([
      ['rpc', 'order.created', 'success', [String(rpcOrder.id)]],
      ['ws', 'order.created', 'success', [String(wsOrder.id)]],
    ]);
  });

  it('a transaction the handler leaves running past its reply: the reply waits 2 s for it at most; its change is the call’s fallback event', async () => {
    await t.clearAudit();
    const started = Date.now();
    const reply = await firstValueFrom(tcp.send(CREATE_COMMITTED_LATER, { note: 'tx-rpc-late' }));
    const waited = Date.now() - started;
    expect(reply).toEqual({ accepted: true });
    expect(waited, 'the reply waited for the transaction to commit').toBeLessThan(LATE_COMMIT_MS - 300);

    await expect.poll(async () => (await t.rows()).length, { timeout: LATE_COMMIT_MS * 3, interval: 250 }).toBe(2);
    const rows = (await t.rows()).sort((a, b) => a.kind.localeCompare(b.kind));
    const stored = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'tx-rpc-late' });
    expect(rows.map((row) => [row.kind, row.source, row.action, row.outcome, row.changes?.map((change) => change.id)])).toEqual([
      ['change', 'rpc', 'order.created', 'success', [String(stored.id)]],
      ['intent', 'rpc', 'order.created', 'success', []],
    ]);
    expect(rows[1]!.requestId).toBe(rows[0]!.requestId);
  });

  it('storage fails: the call errors instead of replying; the committed change is recorded once storage is back', async () => {
    await t.clearAudit();
    await renameAuditLog(true);
    let rpc: Answer;
    let wsAnswer: Answer | undefined;
    try {
      rpc = await rpcCall('tx-rpc-fc');
      if (APP_INTERCEPTORS_WRAP_GATEWAYS) wsAnswer = await wsCall('tx-ws-fc');
    } finally {
      await renameAuditLog(false);
    }

    // The handlers' transactions committed: the audit trail owes a record of each.
    const rpcOrder = await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'tx-rpc-fc' });
    const wsOrder = APP_INTERCEPTORS_WRAP_GATEWAYS ? await t.dataSource.getRepository(Order).findOneByOrFail({ note: 'tx-ws-fc' }) : undefined;
    // No answer without its record: the clients get errors, not the handlers' replies.
    expect.soft(rpc, 'the microservice call').toEqual({ error: 'Internal server error' });
    if (wsOrder) expect.soft(wsAnswer, 'the WebSocket event').toEqual({ error: expect.objectContaining({ status: 'error', message: 'Internal server error' }) });

    const expected = [['rpc', 'order.created', [String(rpcOrder.id)]], ...(wsOrder ? [['ws', 'order.created', [String(wsOrder.id)]]] : [])];
    await expect.poll(async () => (await t.rows()).length, { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(expected.length);
    await new Promise((resolve) => setTimeout(resolve, 500)); // nothing is written twice
    const rows = await t.rows();
    expect(rows.map((row) => [row.source, row.action, row.changes?.map((change) => change.id)]).sort()).toEqual(expected);
    expect(await t.dataSource.getRepository(AuditJournalEntity).count()).toBe(0);
  });
});
