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
