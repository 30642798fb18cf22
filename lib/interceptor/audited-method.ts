import { innermostUnit } from '../context/async-frame.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';

/** Runs an `@Audited` provider method as a unit of work. Set on provider instances by the module. */
export interface AuditedMethodRunner {
  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[]): unknown;
}

/**
 * Where a provider instance keeps the runner of the application it belongs to: on the
 * instance of a singleton, on the class prototype of a provider whose instances are made
 * later (request-scoped, transient, durable) — see `ScopedMethodRunners`.
 */
export const AUDITED_METHOD_RUNNER = Symbol.for('nestjs-system-audit:audited-method-runner');

/** An application's runner as a class prototype holds it. */
export interface ScopedMethodRunner extends AuditedMethodRunner {
  /** True when the code running now is in one of this application's units of work. */
  isRunningUnit(): boolean;
}

/**
 * The runners of the applications that provide a class whose instances are made per request
 * or per consumer, set on its prototype (Nest has no hook for an instance being made). A call
 * goes to the application whose unit of work the caller runs in; outside any, to the one
 * registered last. One application per class, as is the rule, makes that its own.
 */
export class ScopedMethodRunners implements AuditedMethodRunner {
  private readonly runners: ScopedMethodRunner[] = [];

  /** The registry of `prototype`, made (as a hidden own property) when it has none. */
  static of(prototype: object): ScopedMethodRunners {
    const own = Object.prototype.hasOwnProperty.call(prototype, AUDITED_METHOD_RUNNER)
      ? ((prototype as Record<symbol, unknown>)[AUDITED_METHOD_RUNNER] as ScopedMethodRunners)
      : undefined;
    if (own instanceof ScopedMethodRunners) return own;
    const runners = new ScopedMethodRunners();
    Object.defineProperty(prototype, AUDITED_METHOD_RUNNER, { value: runners, enumerable: false, configurable: true });
    return runners;
  }

  add(runner: ScopedMethodRunner): void {
    if (!this.runners.includes(runner)) this.runners.push(runner);
  }

  remove(runner: ScopedMethodRunner): void {
    const index = this.runners.indexOf(runner);
    if (index >= 0) this.runners.splice(index, 1);
  }

  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[]): unknown {
    let runner: ScopedMethodRunner | undefined;
    for (let index = this.runners.length - 1; index >= 0 && !runner; index--) if (this.runners[index]!.isRunningUnit()) runner = this.runners[index];
    runner ??= this.runners[this.runners.length - 1];
    return runner ? runner.call(self, original, audited, args) : original.apply(self, args);
  }
}

/**
 * The method `@Audited` puts in place of the decorated one. On a provider instance that
 * the audit module has attached a runner to, a call runs as a unit of work; anywhere
 * else (controllers, which the interceptor covers; objects created by hand; an
 * application without the module) it is the original method, unchanged.
 *
 * Called as the handler of the unit of work running now (a controller handler, a resolver,
 * a message or WebSocket handler), it gives that unit the arguments Nest called it with,
 * after pipes: what the `@Audited` options receive as `args`.
 */
export function auditedMethod(original: (...args: unknown[]) => unknown, audited: AuditedMetadata): (...args: unknown[]) => unknown {
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    innermostUnit()?.handlerCalled(audited, args);
    const runner = (this as { [AUDITED_METHOD_RUNNER]?: AuditedMethodRunner } | undefined)?.[AUDITED_METHOD_RUNNER];
    return runner ? runner.call(this as object, original, audited, args) : original.apply(this, args);
  };
  Object.defineProperty(wrapped, 'name', { value: original.name });
  // Keep metadata other decorators (e.g. @Cron above @Audited) already put on the method.
  if (typeof Reflect.getMetadataKeys === 'function') {
    for (const key of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, original), wrapped);
    }
  }
  return wrapped;
}
