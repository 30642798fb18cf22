import type { DynamicModule, Provider } from '@nestjs/common';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';

/** What `forRootAsync()` / `registerAsync()` is given: one of three ways to make the options. */
interface AsyncOptionsWays {
  useFactory?: unknown;
  useClass?: unknown;
  useExisting?: unknown;
}

/** The module whose asynchronous registration is checked, as its errors name it. */
export interface AsyncRegistration {
  moduleName: 'AuditModule' | 'AuditViewerModule';
  /** `forRootAsync` or `registerAsync`: the option the errors name. */
  method: string;
  /** The method an options class must have: `createAuditOptions`, `createAuditViewerOptions`. */
  factoryMethod: string;
  /** The token the options are provided under. */
  token: unknown;
}

const WAYS = ['useFactory', 'useClass', 'useExisting'] as const;

const nameOf = (value: unknown): string =>
  typeof value === 'function' && value.name ? value.name : typeof value === 'symbol' ? value.toString() : JSON.stringify(value) ?? String(value);

/**
 * Checks the asynchronous registration before Nest reads it: exactly one way to make the
 * options, and an options class that has the factory method. Without this Nest answers a
 * missing way with a DI error about an internal token and a class without the method with
 * `TypeError: optionsFactory[...] is not a function`.
 *
 * @throws InvalidAuditOptionsError naming the method (`forRootAsync`, `registerAsync`).
 */
export function checkAsyncOptions(registration: AsyncRegistration, options: unknown): void {
  const fail = (problem: string): never => {
    throw new InvalidAuditOptionsError(registration.method, problem, registration.moduleName);
  };
  if (options === null || typeof options !== 'object') fail(`must be an object such as { useFactory, inject }`);
  const given = WAYS.filter((way) => (options as AsyncOptionsWays)[way] !== undefined);
  if (given.length !== 1) fail(`needs one of useFactory, useClass or useExisting${given.length ? `, got ${given.join(', ')}` : ''}`);
  const { useFactory, useClass } = options as AsyncOptionsWays;
  if (useFactory !== undefined && typeof useFactory !== 'function') fail(`useFactory must be a function, got ${nameOf(useFactory)}`);
  if (useClass !== undefined) {
    if (typeof useClass !== 'function') fail(`useClass must be a class, got ${nameOf(useClass)}`);
    if (typeof (useClass as { prototype?: Record<string, unknown> }).prototype?.[registration.factoryMethod] !== 'function') {
      fail(`useClass ${nameOf(useClass)} has no ${registration.factoryMethod}() method`);
    }
  }
}

/**
 * The module definition with its options provider for `useExisting` (and `useClass`)
 * calling the factory method only once it has checked that the instance has it: a
 * provider given by `useExisting` is only known at start-up.
 */
export function withCheckedOptionsFactory(registration: AsyncRegistration, definition: DynamicModule, options: AsyncOptionsWays): DynamicModule {
  const source = options.useExisting ?? options.useClass;
  if (source === undefined) return definition;
  const way = options.useExisting !== undefined ? 'useExisting' : 'useClass';
  const providers = (definition.providers ?? []).map((provider: Provider): Provider => {
    if (typeof provider !== 'object' || !('provide' in provider) || provider.provide !== registration.token || !('useFactory' in provider)) return provider;
    return {
      provide: registration.token as string | symbol,
      inject: [source as string | symbol],
      useFactory: (factory: Record<string, unknown> | undefined) => {
        const create = factory?.[registration.factoryMethod];
        if (typeof create !== 'function') {
          throw new InvalidAuditOptionsError(registration.method, `${way} ${nameOf(source)} has no ${registration.factoryMethod}() method`, registration.moduleName);
        }
        return (create as () => unknown).call(factory);
      },
    };
  });
  return { ...definition, providers };
}
