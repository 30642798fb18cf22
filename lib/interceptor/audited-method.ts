import { innermostUnit } from '../context/async-frame.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';

/** Runs an `@Audited` provider method as a unit of work. Set on provider instances by the module. */
export interface AuditedMethodRunner {
  /** `method`: the function called (the one `@Audited` put in place), whose metadata other method decorators (`@AuditSource`) may have set. */
  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[], method?: (...args: unknown[]) => unknown): unknown;
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

  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[], method?: (...args: unknown[]) => unknown): unknown {
    let runner: ScopedMethodRunner | undefined;
    for (let index = this.runners.length - 1; index >= 0 && !runner; index--) if (this.runners[index]!.isRunningUnit()) runner = this.runners[index];
    runner ??= this.runners[this.runners.length - 1];
    return runner ? runner.call(self, original, audited, args, method) : original.apply(self, args);
  }
}

/** What a method `@Audited` put in place says about itself (a hidden property of it). */
const AUDITED_METHOD = Symbol('nestjs-system-audit:audited-method');

interface AuditedMethodInfo {
  original: (...args: unknown[]) => unknown;
  /** Put in place by `@Audited` on the class, rather than on the method. */
  classWide: boolean;
}

/** True for a method `@Audited` put in place (on the method or on its class). */
export function isAuditedMethod(method: unknown): boolean {
  return typeof method === 'function' && (method as { [AUDITED_METHOD]?: AuditedMethodInfo })[AUDITED_METHOD] !== undefined;
}

/**
 * Methods of a class that are Nest's lifecycle and gateway hooks, not the class's work:
 * `@Audited` on the class leaves them alone.
 */
const HOOKS: ReadonlySet<string> = new Set([
  'constructor',
  'onModuleInit',
  'onApplicationBootstrap',
  'onModuleDestroy',
  'beforeApplicationShutdown',
  'onApplicationShutdown',
  'afterInit',
  'handleConnection',
  'handleDisconnect',
]);

/**
 * `@Audited` on a class: puts an audited method in place of each method of the class (its
 * own and those it inherits, but not Nest's lifecycle hooks), on the class's prototype. A
 * method with its own `@Audited` keeps it; one audited by a base class's `@Audited` is
 * audited with this class's instead.
 */
export function auditClassMethods(type: { prototype: object }, audited: AuditedMetadata): void {
  const prototype = type.prototype;
  const seen = new Set<string>();
  for (let owner: object | null = prototype; owner && owner !== Object.prototype; owner = Object.getPrototypeOf(owner) as object | null) {
    for (const name of Object.getOwnPropertyNames(owner)) {
      if (seen.has(name) || HOOKS.has(name)) continue;
      seen.add(name);
      const descriptor = Object.getOwnPropertyDescriptor(owner, name)!;
      if (typeof descriptor.value !== 'function') continue;
      const info = (descriptor.value as { [AUDITED_METHOD]?: AuditedMethodInfo })[AUDITED_METHOD];
      if (info && !info.classWide) continue;
      const method = auditedMethod(info?.original ?? (descriptor.value as (...args: unknown[]) => unknown), audited, true);
      Object.defineProperty(prototype, name, { ...descriptor, value: method });
    }
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
 * after pipes: what the `@Audited` options receive as `args`. Put in place by `@Audited` on
 * a class (`classWide`), a call made while a call of the same class's audited methods runs
 * (one method calling another) is part of that call, not one of its own.
 */
export function auditedMethod(
  original: (...args: unknown[]) => unknown,
  audited: AuditedMetadata,
  classWide = false,
): (...args: unknown[]) => unknown {
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    const unit = innermostUnit();
    if (unit && !unit.handlerCalled(audited, args) && classWide && unit.audited === audited && unit.handlerRunning) {
      return original.apply(this, args);
    }
    const runner = (this as { [AUDITED_METHOD_RUNNER]?: AuditedMethodRunner } | undefined)?.[AUDITED_METHOD_RUNNER];
    return runner ? runner.call(this as object, original, audited, args, wrapped) : original.apply(this, args);
  };
  Object.defineProperty(wrapped, 'name', { value: original.name });
  Object.defineProperty(wrapped, AUDITED_METHOD, { value: { original, classWide } satisfies AuditedMethodInfo });
  // Keep metadata other decorators (e.g. @Cron above @Audited) already put on the method.
  if (typeof Reflect.getMetadataKeys === 'function') {
    for (const key of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, original), wrapped);
    }
  }
  return wrapped;
}
