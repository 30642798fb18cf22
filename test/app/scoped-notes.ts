import { Body, Controller, Inject, Injectable, Param, ParseIntPipe, Post, Scope, UseGuards } from '@nestjs/common';
import { ContextIdFactory, REQUEST, type ContextId, type ContextIdResolverFn, type ContextIdStrategy, type HostComponentInfo } from '@nestjs/core';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

interface NoteInput {
  note: string;
  /** Milliseconds to wait between the read and the write: lets parallel requests overlap. */
  delay?: number;
}

const pause = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes an order's note: the body every scoped provider below shares. */
abstract class NoteWriter {
  constructor(protected readonly orders: Repository<Order>) {}

  protected async write(id: number, { note, delay }: NoteInput): Promise<void> {
    await this.orders.findOneByOrFail({ id });
    await pause(delay);
    await this.orders.update(id, { note });
  }
}

/** One instance per request; it reads the request it was made for. */
@Injectable({ scope: Scope.REQUEST })
export class RequestScopedNotes extends NoteWriter {
  constructor(@InjectRepository(Order) orders: Repository<Order>, @Inject(REQUEST) readonly request: unknown) {
    super(orders);
  }

  @Audited('note.request-scoped', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async set(id: number, input: NoteInput): Promise<void> {
    await this.write(id, input);
  }
}

/** One instance per consumer. */
@Injectable({ scope: Scope.TRANSIENT })
export class TransientNotes extends NoteWriter {
  constructor(@InjectRepository(Order) orders: Repository<Order>) {
    super(orders);
  }

  @Audited('note.transient')
  async set(id: number, input: NoteInput): Promise<void> {
    await this.write(id, input);
  }
}

/**
 * Durable: one instance per tenant (with a `ContextIdStrategy` such as `TenantContexts`),
 * shared by that tenant's requests.
 */
@Injectable({ scope: Scope.REQUEST, durable: true })
export class DurableNotes extends NoteWriter {
  constructor(@InjectRepository(Order) orders: Repository<Order>) {
    super(orders);
  }

  @Audited('note.durable')
  async set(id: number, input: NoteInput): Promise<void> {
    await this.write(id, input);
  }
}

/** Durable providers' context per `X-Tenant` header (Nest's multi-tenancy recipe). */
export class TenantContexts implements ContextIdStrategy {
  private readonly tenants = new Map<string, ContextId>();

  attach(contextId: ContextId, request: { headers: Record<string, string | undefined> }): ContextIdResolverFn {
    const tenant = request.headers['x-tenant'] ?? 'none';
    let tenantId = this.tenants.get(tenant);
    if (!tenantId) this.tenants.set(tenant, (tenantId = ContextIdFactory.create()));
    return (info: HostComponentInfo) => (info.isTreeDurable ? tenantId : contextId);
  }
}

/** A default-scope provider that depends on a request-scoped one: request-scoped itself. */
@Injectable()
export class ImplicitlyScopedNotes extends NoteWriter {
  constructor(
    @InjectRepository(Order) orders: Repository<Order>,
    readonly perRequest: RequestScopedNotes,
  ) {
    super(orders);
  }

  @Audited('note.implicitly-scoped')
  async set(id: number, input: NoteInput): Promise<void> {
    await this.write(id, input);
  }
}

/** A singleton that uses a transient provider, called by code outside any request. */
@Injectable()
export class NoteSweeper {
  constructor(readonly notes: TransientNotes) {}

  sweep(id: number): Promise<void> {
    return this.notes.set(id, { note: 'swept' });
  }
}

@Controller('scoped')
@UseGuards(TokenGuard)
export class ScopedNotesController {
  constructor(
    private readonly perRequest: RequestScopedNotes,
    private readonly transient: TransientNotes,
    private readonly implicit: ImplicitlyScopedNotes,
    private readonly durable: DurableNotes,
  ) {}

  @Post('request/:id')
  request(@Param('id', ParseIntPipe) id: number, @Body() input: NoteInput): Promise<void> {
    return this.perRequest.set(id, input);
  }

  @Post('transient/:id')
  transientNote(@Param('id', ParseIntPipe) id: number, @Body() input: NoteInput): Promise<void> {
    return this.transient.set(id, input);
  }

  @Post('implicit/:id')
  implicitNote(@Param('id', ParseIntPipe) id: number, @Body() input: NoteInput): Promise<void> {
    return this.implicit.set(id, input);
  }

  @Post('durable/:id')
  durableNote(@Param('id', ParseIntPipe) id: number, @Body() input: NoteInput): Promise<void> {
    return this.durable.set(id, input);
  }
}

export const SCOPED_NOTE_PROVIDERS = [RequestScopedNotes, TransientNotes, ImplicitlyScopedNotes, DurableNotes, NoteSweeper];
