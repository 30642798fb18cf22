import { Injectable } from '@nestjs/common';
import { currentUnit, runInUnit } from './async-frame.js';
import type { UnitOfWork } from './unit-of-work.js';

/**
 * The unit of work of the code running now (carried by the module's `AsyncLocalStorage`),
 * and the units that are running (so that shutdown can wait for them).
 */
@Injectable()
export class AuditContext {
  private readonly live = new Set<UnitOfWork>();
  private idle?: { promise: Promise<void>; resolve: () => void };
  /** Units whose client left before their request was done (see `strand`). */
  private readonly stranded = new Map<UnitOfWork, { dropped: () => boolean; settle: () => void }>();
  /** The shutdown has begun: a stranded unit is settled as soon as its request is dropped (see `recheckStranded`). */
  private shuttingDown = false;

  /** The innermost unit of work, if any. */
  current(): UnitOfWork | undefined {
    return currentUnit(this);
  }

  run<T>(unit: UnitOfWork, fn: () => T): T {
    this.track(unit);
    return runInUnit(this, unit, fn);
  }

  /** Follows `unit` until it has ended. */
  track(unit: UnitOfWork): void {
    if (!unit.isLive || this.live.has(unit)) return;
    this.live.add(unit);
    unit.onEnded(() => {
      this.live.delete(unit);
      if (this.live.size === 0 && this.idle) {
        this.idle.resolve();
        this.idle = undefined;
      }
    });
  }

  /** The ids of the units that have not ended. */
  liveUnitIds(): Set<string> {
    return new Set([...this.live].map((unit) => unit.id));
  }

  /**
   * `unit`'s client left before its request was done, and the framework may drop the
   * request without ever routing or ending it: `dropped` tells whether it did, `settle`
   * settles the unit. Its route's end or a timer settles it otherwise; the shutdown settles
   * it at once when `dropped` says so (see `settleDropped`), instead of waiting for it.
   */
  strand(unit: UnitOfWork, dropped: () => boolean, settle: () => void): void {
    if (!unit.isLive || this.stranded.has(unit)) return;
    this.stranded.set(unit, { dropped, settle });
    unit.onEnded(() => this.stranded.delete(unit));
  }

  /**
   * Settles the units whose requests the framework dropped (see `strand`): nothing else
   * would, before their timer. One whose request is still on its way (a middleware at work)
   * is settled once the framework drops it (see `recheckStranded`), not before: what it does
   * until then is its request's.
   */
  settleDropped(): void {
    this.shuttingDown = true;
    for (const [unit, { dropped, settle }] of this.stranded) {
      if (!dropped()) continue;
      this.stranded.delete(unit);
      settle();
    }
  }

  /** `unit`'s request may just have been dropped (see `strand`): during the shutdown, it is settled at once. */
  recheckStranded(unit: UnitOfWork): void {
    const entry = this.stranded.get(unit);
    if (!this.shuttingDown || !entry?.dropped()) return;
    this.stranded.delete(unit);
    entry.settle();
  }

  /** Resolves when no unit is running. */
  whenIdle(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    if (!this.idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.idle = { promise, resolve };
    }
    return this.idle.promise;
  }
}
