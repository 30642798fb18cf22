import { AsyncLocalStorage } from 'node:async_hooks';
import { Injectable } from '@nestjs/common';
import type { UnitOfWork } from './unit-of-work.js';

/** The unit of work of the code running now, carried by `AsyncLocalStorage`. */
@Injectable()
export class AuditContext {
  private readonly storage = new AsyncLocalStorage<UnitOfWork>();

  /** The innermost unit of work, if any. */
  current(): UnitOfWork | undefined {
    return this.storage.getStore();
  }

  run<T>(unit: UnitOfWork, fn: () => T): T {
    return this.storage.run(unit, fn);
  }
}
