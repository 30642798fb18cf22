import { Injectable, type ExecutionContext } from '@nestjs/common';
import type { UnitOfWork } from '../context/unit-of-work.js';

/**
 * The units of work the audit interceptor opened for calls whose events it stores itself
 * (a microservice message, a WebSocket event), by the call's execution context (one per
 * call, shared by every interceptor around its handler).
 */
@Injectable()
export class CallUnits {
  private readonly units = new WeakMap<ExecutionContext, UnitOfWork>();

  set(ctx: ExecutionContext, unit: UnitOfWork): void {
    this.units.set(ctx, unit);
  }

  of(ctx: ExecutionContext): UnitOfWork | undefined {
    return this.units.get(ctx);
  }
}
