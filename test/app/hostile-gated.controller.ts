import { Controller, Param, ParseIntPipe, Patch, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Audited } from '../../lib/index.js';
import { Order } from './order.entity.js';
import { TokenGuard } from './token.guard.js';

/**
 * An `@Audited` handler that commits its change, then waits for the test to open a gate
 * before it returns: the test can act on the world (cut the database away, age a lease)
 * between the commit and the unit's storing.
 */
@Controller('hostile/gated')
@UseGuards(TokenGuard)
export class GatedController {
  private gates: Array<() => void> = [];

  constructor(@InjectRepository(Order) private readonly orders: Repository<Order>) {}

  /** Lets every waiting handler return. */
  open(): void {
    for (const gate of this.gates.splice(0)) gate();
  }

  @Patch('orders/:id')
  @Audited('order.gated', { target: ({ params }) => ({ type: 'order', id: params['id']! }) })
  async update(@Param('id', ParseIntPipe) id: number): Promise<{ id: number }> {
    await this.orders.update(id, { status: 'gated' });
    // Bounded: a test that forgets to open the gate still ends.
    await new Promise<void>((resolve) => {
      this.gates.push(resolve);
      setTimeout(resolve, 20_000).unref();
    });
    return { id };
  }
}
