import { Controller, Injectable, Post } from '@nestjs/common';
import { Audited } from '../../lib/index.js';

/** A provider with a synchronous `@Audited` method (a price override decided in memory). */
@Injectable()
export class PriceOverrides {
  @Audited('price.overridden', { target: () => ({ type: 'price', id: 'p-1' }) })
  override(amount: number): number {
    return amount;
  }
}

/** A plain handler that calls the synchronous `@Audited` method. */
@Controller('hostile/prices')
export class PriceOverridesController {
  constructor(private readonly prices: PriceOverrides) {}

  @Post()
  create(): { amount: number } {
    return { amount: this.prices.override(42) };
  }
}
