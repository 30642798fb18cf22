import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { AuditService, type AuditActor } from 'nestjs-system-audit';
import { OrdersService } from './orders.service.js';

export interface OrderExpiryOptions {
  /** How often the job runs, in seconds; 0 turns the schedule off. */
  intervalSeconds: number;
  /** How long an order may stay unpaid, in seconds. */
  ttlSeconds: number;
}

export const ORDER_EXPIRY_OPTIONS = Symbol('ORDER_EXPIRY_OPTIONS');

/**
 * Expires orders left unpaid for too long. Each run is one audit unit of work with
 * its own actor and `source: 'job'`, so the trail says a job did it, not a user.
 */
@Injectable()
export class OrderExpiryJob implements OnApplicationBootstrap, BeforeApplicationShutdown {
  static readonly actor: AuditActor = { type: 'system', id: 'order-expirer', display: 'Order expiry job' };

  private readonly logger = new Logger(OrderExpiryJob.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    private readonly orders: OrdersService,
    private readonly audit: AuditService,
    @Inject(ORDER_EXPIRY_OPTIONS) private readonly options: OrderExpiryOptions,
  ) {}

  onApplicationBootstrap(): void {
    if (this.options.intervalSeconds > 0) {
      this.timer = setInterval(() => this.tick(), this.options.intervalSeconds * 1000);
    }
  }

  /** Stops the schedule and lets a run in progress finish before the database closes. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Expires the pending orders created before `cutoff` (default: now less the TTL) and
   * records one `order.expired` event per order. Returns how many it expired.
   */
  expireStale(cutoff = new Date(Date.now() - this.options.ttlSeconds * 1000)): Promise<number> {
    return this.audit.runAs(
      OrderExpiryJob.actor,
      async () => {
        let expired = 0;
        for (const order of await this.orders.findStale(cutoff)) {
          if (!(await this.orders.expire(order))) continue; // paid or cancelled meanwhile
          expired++;
          await this.audit.log({
            action: 'order.expired',
            target: { type: 'order', id: order.id },
            reason: 'not paid in time',
            context: { createdAt: order.createdAt, cutoff },
          });
        }
        return expired;
      },
      { source: 'job' },
    );
  }

  private tick(): void {
    if (this.running) return; // the previous run is still going
    this.running = this.expireStale()
      .then((count) => {
        if (count > 0) this.logger.log(`Expired ${count} unpaid order(s)`);
      })
      .catch((error: unknown) => this.logger.error(`Order expiry failed: ${String(error)}`))
      .finally(() => (this.running = undefined));
  }
}
