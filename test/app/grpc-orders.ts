import { fileURLToPath } from 'node:url';
import { Metadata, status as GrpcStatus, type ClientReadableStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { Controller, Injectable, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { ClientProxyFactory, GrpcMethod, GrpcStreamMethod, RpcException, Transport } from '@nestjs/microservices';
import { InjectRepository } from '@nestjs/typeorm';
import { concatMap, from, map, reduce, type Observable } from 'rxjs';
import type { Repository } from 'typeorm';
import { Audited, type AuditModuleOptions } from '../../lib/index.js';
import { freePort } from '../support/broker-probe.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import type { TestDatabase } from '../support/test-database.js';
import { createTestApp, type TestApp, type TestAppOptions } from './create-test-app.js';
import { Order } from './order.entity.js';
import { RequestHold } from './request-hold.js';
import { USERS } from './token.guard.js';

/** The package and file of the fixture's gRPC service. */
export const GRPC_PACKAGE = 'audit_test.orders';
export const GRPC_PROTO_PATH = fileURLToPath(new URL('./grpc-orders.proto', import.meta.url));
export const GRPC_SERVICE = 'OrdersService';

export interface OrderReply {
  id: number;
  status: string;
  note: string;
}

const replyOf = (order: Order): OrderReply => ({ id: order.id, status: order.status, note: order.note ?? '' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Where a Quote call sent with `hold` waits for the test. */
export const quoteHold = new RequestHold<void>();

/**
 * Checks the `authorization` metadata of a gRPC call and puts the user on the call's
 * Metadata (the handler's RPC context), as an auth guard for gRPC would. `user-<n>` is
 * one of many generated users, for concurrency tests.
 */
@Injectable()
export class GrpcTokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const metadata = context.switchToRpc().getContext<Metadata & { user?: unknown }>();
    const token = String(metadata.get('authorization')[0] ?? '').replace(/^Bearer /, '');
    if (token === 'revoked') return false; // turned away: Nest's ForbiddenException
    const numbered = /^user-(\d+)$/.exec(token);
    const user = numbered ? { id: 1000 + Number(numbered[1]), email: `user${numbered[1]}@example.com`, roles: [] } : USERS[token];
    if (user) metadata.user = user;
    return true;
  }
}

/** The fixture's gRPC service over its orders. */
@Controller()
@UseGuards(GrpcTokenGuard)
export class GrpcOrdersController {
  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  @GrpcMethod(GRPC_SERVICE, 'UpdateOrder')
  @Audited('order.updated', { target: ({ args }) => ({ type: 'order', id: String((args[0] as { id: number }).id) }) })
  async updateOrder(request: { id: number; status: string }): Promise<OrderReply> {
    const order = await this.orders.findOneByOrFail({ id: request.id });
    order.status = request.status;
    return replyOf(await this.orders.save(order));
  }

  @GrpcMethod(GRPC_SERVICE, 'PayOrder')
  @Audited('order.paid')
  async payOrder(request: { id: number }): Promise<OrderReply> {
    const order = await this.orders.findOneByOrFail({ id: request.id });
    if (order.status === 'paid') throw new RpcException({ code: GrpcStatus.FAILED_PRECONDITION, message: `Order ${request.id} is already paid` });
    order.status = 'paid';
    return replyOf(await this.orders.save(order));
  }

  /**
   * Server streaming: one reply per order, all written by one call — each order saved as
   * its reply is produced, so the later ones after the first reply went out.
   */
  @GrpcMethod(GRPC_SERVICE, 'NoteOrders')
  @Audited('orders.noted')
  noteOrders(request: { ids: number[]; note: string }): Observable<OrderReply> {
    return from(request.ids).pipe(
      concatMap(async (id) => {
        const order = await this.orders.findOneByOrFail({ id });
        order.note = request.note;
        return replyOf(await this.orders.save(order));
      }),
    );
  }

  /**
   * Client streaming: every order id the client sends is cancelled, in one call. It returns
   * an Observable: NestJS completes a @GrpcStreamMethod's request stream only after the
   * handler has returned, so an async handler awaiting that completion would never end.
   */
  @GrpcStreamMethod(GRPC_SERVICE, 'CancelOrders')
  @Audited('orders.cancelled')
  cancelOrders(ids: Observable<{ id: number }>): Observable<{ cancelled: number }> {
    return ids.pipe(
      concatMap(({ id }) => this.orders.update({ id }, { status: 'cancelled' })),
      reduce((cancelled) => cancelled + 1, 0),
      map((cancelled) => ({ cancelled })),
    );
  }

  /**
   * Bidirectional streaming: each update the client sends is saved and answered at once,
   * all in one call. The status `refused` fails the call with INVALID_ARGUMENT (the updates
   * before it are saved).
   */
  @GrpcStreamMethod(GRPC_SERVICE, 'UpdateOrders')
  @Audited('orders.updated')
  updateOrders(updates: Observable<{ id: number; status: string }>): Observable<OrderReply> {
    return updates.pipe(
      concatMap(async ({ id, status }) => {
        if (status === 'refused') throw new RpcException({ code: GrpcStatus.INVALID_ARGUMENT, message: `Order ${id} cannot be ${status}` });
        const order = await this.orders.findOneByOrFail({ id });
        order.status = status;
        return replyOf(await this.orders.save(order));
      }),
    );
  }

  /** A pricing call, answered after `delay` ms (or once the test releases `quoteHold`); not audited, writes nothing. */
  @GrpcMethod(GRPC_SERVICE, 'Quote')
  async quote(request: { delay: number; hold?: boolean }): Promise<{ price: number }> {
    if (request.hold) await quoteHold.wait();
    await sleep(request.delay);
    return { price: 42 };
  }
}

/**
 * A hybrid Express app whose gRPC server (`proto` of `grpcPackage`, on a free port of
 * 127.0.0.1) serves `controllers`, guarded by `GrpcTokenGuard`; returns the app and the
 * gRPC server's address. Its handlers get the app's global interceptors (the audit
 * module's included) through `inheritAppConfig`. `url` sets the server's address. With
 * `client`, the app also provides, under `client.token`, a Nest `ClientGrpc` of the same
 * service at `client.url` (default: the server's), whose channel connects on first use,
 * for handlers that call it.
 */
export async function grpcHybridApp(
  db: TestDatabase,
  options: {
    controllers: TestAppOptions['controllers'];
    grpcPackage: string;
    proto: string;
    audit?: AuditModuleOptions;
    url?: string;
    client?: { token: string; url?: string };
  },
): Promise<{ t: TestApp; url: string }> {
  const url = options.url ?? `127.0.0.1:${await freePort()}`;
  const client = options.client;
  const t = await createTestApp({
    db,
    adapter: 'express',
    controllers: options.controllers,
    providers: [
      GrpcTokenGuard,
      ...(client
        ? [
            {
              provide: client.token,
              useFactory: () => ClientProxyFactory.create({ transport: Transport.GRPC, options: { package: options.grpcPackage, protoPath: options.proto, url: client.url ?? url } }),
            },
          ]
        : []),
    ],
    ...(options.audit ? { audit: options.audit } : {}),
    configure: async (app) => {
      app.connectMicroservice({ transport: Transport.GRPC, options: { package: options.grpcPackage, protoPath: options.proto, url } }, { inheritAppConfig: true });
      await app.startAllMicroservices();
    },
  });
  return { t, url };
}

/**
 * A {@link grpcHybridApp} with `controllers` whose `ClientGrpc` (provided under `token`)
 * reaches its gRPC server through a TCP proxy the test can freeze: the channel then stays
 * connecting (grpc-js takes it as ready once the server's HTTP/2 settings arrive) for as
 * long as the test needs. `close()` closes the client, the app and the proxy.
 */
export async function grpcAppBehindProxy(
  db: TestDatabase,
  controllers: TestAppOptions['controllers'],
  token: string,
): Promise<{ t: TestApp; proxy: TcpProxy; close(): Promise<void> }> {
  const port = await freePort();
  const proxy = new TcpProxy('127.0.0.1', port);
  await proxy.start();
  const { t } = await grpcHybridApp(db, { controllers, grpcPackage: GRPC_PACKAGE, proto: GRPC_PROTO_PATH, url: `127.0.0.1:${port}`, client: { token, url: `127.0.0.1:${proxy.port}` } });
  return {
    t,
    proxy,
    close: async () => {
      (t.app.get(token) as { close(): void }).close();
      await t.close();
      await proxy.stop();
    },
  };
}

/** The raw `@grpc/grpc-js` client of the service, as `ClientGrpc.getClientByServiceName()` gives it. */
export interface RawOrdersClient {
  Quote(request: { delay: number }, metadata: Metadata, callback: (error: ServiceError | null, reply?: { price: number }) => void): ClientUnaryCall;
  NoteOrders(request: { ids: number[]; note: string }, metadata: Metadata): ClientReadableStream<OrderReply>;
}

/** A unary `Quote` call on the raw client whose callback saves an order noted `note`: resolves with the quote once saved. */
export function quoteThenSave(raw: RawOrdersClient, orders: Repository<Order>, body: { note: string; delay: number }): Promise<{ price: number }> {
  return new Promise((resolve, reject) => {
    raw.Quote({ delay: body.delay }, new Metadata(), (error, quote) => {
      if (error || !quote) return reject(error ?? new Error('no reply'));
      orders.save(orders.create({ status: 'quoted', total: quote.price, note: body.note })).then(() => resolve(quote), reject);
    });
  });
}
