import { Body, ConflictException, Param, ParseIntPipe, Patch } from '@nestjs/common';
import type { Repository } from 'typeorm';
import { Audited, type AuditService } from '../../lib/index.js';
import { Order } from './order.entity.js';

/**
 * What apps whose transactions a library opens (test/app/cls-transactional.ts,
 * test/app/typeorm-transactional.ts) have in common: the services and routes, written
 * once; each library's file gives them its `@Transactional()` decorators and its way to
 * the transaction's repository.
 */

/** What a service method refuses after it wrote: its transaction rolls back. */
export class OrderRefused extends Error {}

/** The service account `runAs` work runs as. */
export const IMPORTER = { type: 'service', id: 'importer' } as const;

/** A provider whose `@Audited` methods write through `orders` (in the caller's transaction, if any). */
export abstract class TransactionalOrderNotes {
  protected abstract readonly orders: Repository<Order>;

  @Audited('order.noted')
  async note(id: number, note: string): Promise<void> {
    await this.orders.update({ id }, { note });
  }

  /** Reads only: its unit changes nothing. */
  @Audited('order.checked', { target: ({ args }) => ({ type: 'order', id: String(args[0]) }) })
  async check(id: number): Promise<void> {
    await this.orders.findOneByOrFail({ id });
  }
}

/** A library's `@Transactional()`, by propagation. */
export interface TransactionDecorators {
  /** The default: joins the caller's transaction, or opens one. */
  required: () => MethodDecorator;
  /** A transaction of its own, committed first. */
  requiresNew: () => MethodDecorator;
  /** Inside the caller's transaction, rolled back on its own. */
  nested: () => MethodDecorator;
  /**
   * The order the nested transaction of `propagations()` writes: the outer one's
   * (`'same'`), or the other one (`'other'`, for a library that runs a nested transaction
   * on another connection: on the row the outer transaction holds locked, it would wait for
   * ever).
   */
  nestedWrites: 'same' | 'other';
}

/**
 * The service class an app writes with the library's `@Transactional()`: methods that run
 * in transactions and write through `orders` (the transaction's repository).
 */
export function transactionalOrderService(tx: TransactionDecorators) {
  abstract class TransactionalOrderService {
    abstract readonly orders: Repository<Order>;
    abstract readonly audit: AuditService;
    abstract readonly notes: TransactionalOrderNotes;

    @tx.required()
    async setStatus(id: number, status: string): Promise<Order> {
      const order = await this.orders.findOneByOrFail({ id });
      order.status = status;
      return this.orders.save(order);
    }

    /** Two writes of one order in one transaction (a save and an update by criteria): one net change. */
    @tx.required()
    async setStatusAndTotal(id: number, status: string, total: number): Promise<void> {
      await this.setStatus(id, status); // required: joins this transaction
      await this.orders.update({ id }, { total });
    }

    /** Writes, then refuses: the transaction rolls back. */
    @tx.required()
    async setStatusThenRefuse(id: number, status: string): Promise<never> {
      await this.setStatus(id, status);
      throw new OrderRefused(`order ${id} refused after its status was set to ${status}`);
    }

    @tx.requiresNew()
    async noteInNewTransaction(id: number, note: string): Promise<void> {
      await this.orders.update({ id }, { note });
    }

    @tx.nested()
    async noteNestedThenRefuse(id: number, note: string): Promise<never> {
      await this.orders.update({ id }, { note });
      throw new OrderRefused(`note ${note} refused`);
    }

    /**
     * Sets the status of `id` and the note of `other` in a transaction of its own (requires
     * new, committed first), then a nested transaction that sets a note (see
     * {@link TransactionDecorators.nestedWrites}) and rolls back; finally refuses when
     * `refuse`, rolling the outer status back too.
     */
    @tx.required()
    async propagations(id: number, other: number, label: string, refuse: boolean): Promise<void> {
      await this.setStatus(id, `outer-${label}`);
      await this.noteInNewTransaction(other, `new-${label}`);
      await this.noteNestedThenRefuse(tx.nestedWrites === 'same' ? id : other, `nested-${label}`).catch((error: unknown) => {
        if (!(error instanceof OrderRefused)) throw error;
      });
      if (refuse) throw new OrderRefused(`propagations ${label} refused`);
    }

    /** A manual event inside the transaction, then the same write: both commit, or neither. */
    @tx.required()
    async importWithLog(note: string, refuse: boolean): Promise<Order> {
      const order = await this.orders.save(this.orders.create({ status: 'imported', note }));
      await this.audit.log({ action: 'order.imported', target: order, context: { note } });
      if (refuse) throw new OrderRefused(`import ${note} refused`);
      return order;
    }

    /** The status in this transaction, the note through an `@Audited` provider method in it; refused after both when `refuse`. */
    @tx.required()
    async setStatusAndNote(id: number, status: string, note: string, refuse: boolean): Promise<void> {
      await this.setStatus(id, status);
      await this.notes.note(id, note);
      if (refuse) throw new OrderRefused(`order ${id} refused after its note`);
    }

    /** An `@Audited` check (it changes nothing) in this transaction, which then rolls back. */
    @tx.required()
    async checkThenRefuse(id: number): Promise<never> {
      await this.notes.check(id);
      throw new OrderRefused(`order ${id} refused after its check`);
    }

    /** `runAs` work that only logs, in this transaction, which then rolls back. */
    @tx.required()
    async runAsThenRefuse(id: number): Promise<never> {
      await this.audit.runAs(IMPORTER, () => this.audit.log({ action: 'order.looked-at', target: { type: 'order', id: String(id) } }));
      throw new OrderRefused(`order ${id} refused after it was looked at`);
    }

    @tx.required()
    async create(note: string): Promise<Order> {
      return this.orders.save(this.orders.create({ status: 'new', note }));
    }
  }
  return TransactionalOrderService;
}

export type TransactionalOrderService = InstanceType<ReturnType<typeof transactionalOrderService>>;

/** Maps `OrderRefused` to a 409. */
export async function refusedAs409<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof OrderRefused) throw new ConflictException(error.message);
    throw error;
  }
}

/**
 * Routes that reach the database only through the service's transactional methods. Each
 * library's controller adds its path, its guard and the `@Audited` `POST` route with the
 * library's `@Transactional()` on the handler itself.
 */
export abstract class TransactionalOrdersController {
  constructor(protected readonly service: TransactionalOrderService) {}

  @Patch(':id')
  @Audited('order.updated')
  async update(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; total?: number }): Promise<{ id: number }> {
    if (body.total === undefined) await this.service.setStatus(id, body.status);
    else await this.service.setStatusAndTotal(id, body.status, body.total);
    return { id };
  }

  /** The service's transaction rolls back and the handler lets its error through (mapped to a 409). */
  @Patch(':id/refused')
  @Audited('order.updated')
  updateRefused(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<never> {
    return refusedAs409(() => this.service.setStatusThenRefuse(id, body.status));
  }

  /** The service's transaction rolls back; the handler catches the error and succeeds. */
  @Patch(':id/refused-caught')
  @Audited('order.updated')
  async updateRefusedCaught(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<{ refused: true }> {
    await this.service.setStatusThenRefuse(id, body.status).catch((error: unknown) => {
      if (!(error instanceof OrderRefused)) throw error;
    });
    return { refused: true };
  }

  /** A committed transaction, then the handler throws. */
  @Patch(':id/then-fail')
  @Audited('order.updated')
  async updateThenFail(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<never> {
    await this.service.setStatus(id, body.status);
    throw new ConflictException(`order ${id} updated, then refused`);
  }

  @Patch(':id/propagations/:other')
  @Audited('order.updated')
  async propagations(
    @Param('id', ParseIntPipe) id: number,
    @Param('other', ParseIntPipe) other: number,
    @Body() body: { label: string; refuse?: boolean },
  ): Promise<{ id: number }> {
    await refusedAs409(() => this.service.propagations(id, other, body.label, body.refuse === true));
    return { id };
  }

  @Patch(':id/noted')
  @Audited('order.updated')
  async updateNoted(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string; note: string; refuse?: boolean }): Promise<{ id: number }> {
    await refusedAs409(() => this.service.setStatusAndNote(id, body.status, body.note, body.refuse === true));
    return { id };
  }

  /** Not audited: the change is recorded as a fallback `change` event of the request. */
  @Patch(':id/plain')
  async updatePlain(@Param('id', ParseIntPipe) id: number, @Body() body: { status: string }): Promise<{ id: number }> {
    await this.service.setStatus(id, body.status);
    return { id };
  }
}
