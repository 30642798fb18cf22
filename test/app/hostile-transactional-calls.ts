import { Controller, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { InjectDataSource } from '@nestjs/typeorm';
import { ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { from, lastValueFrom, type Observable } from 'rxjs';
import type { DataSource, EntityManager } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';

/** The transaction manager of each message call, by its RPC context or WebSocket client. */
const managers = new WeakMap<object, EntityManager>();

/** The manager of the transaction `MessageTransactionInterceptor` opened around the call whose context or client is `key`. */
function managerOf(key: object): EntityManager {
  const manager = managers.get(key);
  if (!manager) throw new Error('no transaction around this call');
  return manager;
}

/**
 * What many services register as an `APP_INTERCEPTOR` for their message handlers: each
 * microservice message and WebSocket event runs inside one database transaction, which
 * commits after the handler's result is ready (and before the reply goes out).
 */
@Injectable()
export class MessageTransactionInterceptor implements NestInterceptor {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const type = ctx.getType<string>();
    // The RPC context; for a WebSocket event, the client (the payload object the handler gets is not always the one here).
    const key = type === 'ws' ? ctx.switchToWs().getClient<unknown>() : ctx.getArgByIndex<unknown>(1);
    if ((type !== 'rpc' && type !== 'ws') || key === null || typeof key !== 'object') return next.handle();
    return from(
      this.dataSource.transaction(async (manager) => {
        managers.set(key, manager);
        return lastValueFrom(next.handle(), { defaultValue: undefined });
      }),
    );
  }
}

/** The pattern of the microservice handler below. */
export const CREATE_IN_TRANSACTION = { cmd: 'order.create-in-transaction' };

/** An `@Audited` message handler that writes through the transaction opened around it. */
@Controller()
export class TransactionalMessagesController {
  @MessagePattern(CREATE_IN_TRANSACTION)
  @Audited('order.created')
  async create(@Payload() body: { note: string }, @Ctx() context: object): Promise<{ id: number }> {
    const manager = managerOf(context);
    const order = await manager.save(Order, manager.create(Order, { status: 'rpc', note: body.note }));
    return { id: order.id };
  }
}

/** The pattern of the handler below. */
export const CREATE_COMMITTED_LATER = { cmd: 'order.create-committed-later' };

/** How long after its handler returned the transaction of `CREATE_COMMITTED_LATER` commits. */
export const LATE_COMMIT_MS = 3_000;

/**
 * An `@Audited` message handler that leaves a transaction of its own running: its insert
 * commits `LATE_COMMIT_MS` after the handler returned (and its reply went out).
 */
@Controller()
export class LateCommitMessagesController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  @MessagePattern(CREATE_COMMITTED_LATER)
  @Audited('order.created')
  async create(@Payload() body: { note: string }): Promise<{ accepted: true }> {
    let saved!: () => void;
    const inserted = new Promise<void>((resolve) => (saved = resolve));
    void this.dataSource.transaction(async (manager) => {
      await manager.save(Order, manager.create(Order, { status: 'rpc', note: body.note }));
      saved();
      await new Promise((resolve) => setTimeout(resolve, LATE_COMMIT_MS));
    });
    await inserted;
    return { accepted: true };
  }
}

/** The event whose reply says whether `MessageTransactionInterceptor` wrapped it. */
export const PROBE_EVENT = 'tx.probe';

/** The same as a WebSocket gateway event, at `/tx-ws`. */
@WebSocketGateway({ path: '/tx-ws' })
export class TransactionalGateway {
  /** Answers whether an app-level interceptor opened a transaction around this event (not on NestJS 11, whose gateways get no global interceptors). */
  @SubscribeMessage(PROBE_EVENT)
  probe(@ConnectedSocket() client: object): { event: string; data: boolean } {
    return { event: PROBE_EVENT, data: managers.has(client) };
  }

  @SubscribeMessage('order.create')
  @Audited('order.created')
  async create(@MessageBody() body: { note: string }, @ConnectedSocket() client: object): Promise<{ event: string; data: { id: number } }> {
    const manager = managerOf(client);
    const order = await manager.save(Order, manager.create(Order, { status: 'ws', note: body.note }));
    return { event: 'order.created', data: { id: order.id } };
  }
}
