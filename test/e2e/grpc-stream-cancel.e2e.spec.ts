import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Controller, UseGuards } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, from, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, type AuditLogEntity } from '../../lib/index.js';
import type { TestApp } from '../app/create-test-app.js';
import { GrpcTokenGuard, grpcHybridApp } from '../app/grpc-orders.js';
import { Order } from '../app/order.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const PROTO = fileURLToPath(new URL('../app/grpc-slow-orders.proto', import.meta.url));
const PACKAGE = 'slow_stream';
const SERVICE = 'SlowOrders';
/** How long the handlers take between two replies. */
const STEP_MS = 300;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface NoteReply {
  id: number;
  note: string;
}

@Controller()
@UseGuards(GrpcTokenGuard)
class SlowOrdersController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Server streaming: each order noted and answered, a while after the one before. */
  @GrpcMethod(SERVICE, 'NoteSlowly')
  @Audited('orders.noted-slowly')
  noteSlowly(request: { ids: number[]; note: string }): Observable<NoteReply> {
    return from(request.ids).pipe(
      concatMap(async (id, index) => {
        if (index > 0) await sleep(STEP_MS);
        await this.orders.update({ id }, { note: request.note });
        return { id, note: request.note };
      }),
    );
  }
}

interface SlowOrdersClient extends grpc.Client {
  NoteSlowly(request: { ids: number[]; note: string }, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<NoteReply>;
}

function slowOrdersClient(url: string): SlowOrdersClient {
  const loaded = grpc.loadPackageDefinition(loadSync(PROTO)) as unknown as {
    slow_stream: { SlowOrders: new (address: string, credentials: grpc.ChannelCredentials) => SlowOrdersClient };
  };
  return new loaded.slow_stream.SlowOrders(url, grpc.credentials.createInsecure());
}

function metadataOf(headers: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
  return metadata;
}

/**
 * A server-streaming gRPC call the client cancels (or whose deadline passes) after its
 * first reply: what the handler committed is owed a record, the call's, by the call's
 * actor — and soon, not only when the process restarts. (NestJS unsubscribes from the
 * handler's result on `cancelled`: the result neither completes nor errors.) The call's
 * intent is a `failure` with `error: { name: 'Cancelled' }`; a step of the handler still
 * under way then is late work (the system's, naming the call in `originRequestId`).
 */
describe.each(databases())('a streaming gRPC call cancelled after its first reply, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  let client: SlowOrdersClient;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    const app = await grpcHybridApp(db, { controllers: [SlowOrdersController], grpcPackage: PACKAGE, proto: PROTO, audit: { recoverAfter: 1_000, shutdownTimeout: 3_000 } });
    t = app.t;
    client = slowOrdersClient(app.url);
  });
  afterAll(async () => {
    client?.close();
    await t?.close();
    await db?.drop();
  });
  beforeEach(() => t.clearAudit());

  const orders = () => t.dataSource.getRepository(Order);

  /** The rows of `requestId` (its own, or late work that names it), after a while for the background. */
  const recorded = async (requestId: string, ms: number): Promise<AuditLogEntity[]> => {
    const of = async () => (await t.rows()).filter((row) => row.requestId === requestId || row.context?.['originRequestId'] === requestId);
    const until = Date.now() + ms;
    while (Date.now() < until && (await of()).length === 0) await sleep(100);
    await sleep(STEP_MS * 2);
    return of();
  };

  it('server streaming, the client cancels at the first reply: the call’s intent is stored within seconds, claiming what was committed', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }, { status: 'new' }]));
    const requestId = `grpc-sstream-cancel-${kind}`;
    const call = client.NoteSlowly({ ids: list.map((order) => order.id), note: 'cancelled' }, metadataOf({ 'x-request-id': requestId, authorization: 'Bearer bob-token' }));
    const first = await new Promise<NoteReply | undefined>((resolve) => {
      call.on('data', (reply: NoteReply) => {
        resolve(reply);
        call.cancel();
      });
      call.on('error', () => resolve(undefined));
      call.on('end', () => resolve(undefined));
    });
    expect(first).toEqual({ id: list[0]!.id, note: 'cancelled' });

    const rows = await recorded(requestId, 8_000);
    const noted = (await orders().find()).filter((order) => order.note === 'cancelled').map((order) => String(order.id));
    expect(noted).toContain(String(list[0]!.id));
    const [intent, ...late] = rows;
    expect([intent!.action, intent!.kind, intent!.outcome, intent!.actorType, intent!.actorId, intent!.requestId]).toEqual(['orders.noted-slowly', 'intent', 'failure', 'user', '2', requestId]);
    expect(intent!.error).toEqual({ name: 'Cancelled' });
    expect(intent!.changes!.map((change) => change.id)).toEqual([String(list[0]!.id)]);
    // The handler's step under way when the client cancelled still ran: late work, the system's, naming the call.
    for (const row of late) expect([row.kind, row.actorType, row.context?.['originRequestId']]).toEqual(['change', 'system', requestId]);
    expect(rows.flatMap((row) => row.changes!.map((change) => change.id)).sort()).toEqual(noted.sort());
  });

  it('server streaming, the deadline passes after the first reply: the call’s intent is stored within seconds', async () => {
    const list = await t.seed(() => orders().save([{ status: 'new' }, { status: 'new' }, { status: 'new' }]));
    const requestId = `grpc-sstream-deadline-${kind}`;
    const call = client.NoteSlowly({ ids: list.map((order) => order.id), note: 'late' }, metadataOf({ 'x-request-id': requestId, authorization: 'Bearer bob-token' }), {
      deadline: Date.now() + STEP_MS / 2,
    });
    const error = await new Promise<grpc.ServiceError | undefined>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', resolve);
      call.on('end', () => resolve(undefined));
    });
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);

    const rows = await recorded(requestId, 8_000);
    const intents = rows.filter((row) => row.kind === 'intent');
    expect(intents.map((row) => [row.action, row.outcome, row.actorType, row.actorId, row.requestId])).toEqual([['orders.noted-slowly', 'failure', 'user', '2', requestId]]);
    expect(intents[0]!.error).toEqual({ name: 'Cancelled' });
    for (const row of rows.filter((candidate) => candidate.kind !== 'intent')) expect([row.actorType, row.context?.['originRequestId']]).toEqual(['system', requestId]);
  });
});

