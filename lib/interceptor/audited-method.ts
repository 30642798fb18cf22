import type { AuditedMetadata } from '../decorators/audited.decorator.js';

/** Runs an `@Audited` provider method as a unit of work. Set on provider instances by the module. */
export interface AuditedMethodRunner {
  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[]): unknown;
}

/** Where a provider instance keeps the runner of the application it belongs to. */
export const AUDITED_METHOD_RUNNER = Symbol.for('nestjs-system-audit:audited-method-runner');

/**
 * The method `@Audited` puts in place of the decorated one. On a provider instance that
 * the audit module has attached a runner to, a call runs as a unit of work; anywhere
 * else (controllers, which the interceptor covers; objects created by hand; an
 * application without the module) it is the original method, unchanged.
 */
export function auditedMethod(original: (...args: unknown[]) => unknown, audited: AuditedMetadata): (...args: unknown[]) => unknown {
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
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
