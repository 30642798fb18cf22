import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { AUDIT_RESOLVED_OPTIONS, AUDIT_SOURCE_METADATA } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWork } from '../context/unit-of-work.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { AUDITED_METHOD_RUNNER, isAuditedMethod, ScopedMethodRunners, type ScopedMethodRunner } from './audited-method.js';
import { AuditedIntentFactory } from './audited-intent.factory.js';

type ProviderWrapper = ReturnType<DiscoveryService['getProviders']>[number];

/**
 * Attaches itself to every provider (not controller) that has `@Audited` methods, and
 * runs each call of such a method as a unit of work: source `job` with a `system` actor
 * when called outside any unit; source and actor `system`, with the request id as
 * `originRequestId`, when called after the surrounding unit ended (late work); else the
 * surrounding unit's source, actor and request — until that unit stops taking events
 * while the call still runs (it was not awaited): from then on the call is late work
 * too, its event included (what it did before is stored as it was attributed then).
 * The call's changes are claimed by its event. Whoever calls the method — Nest's
 * scheduler, a queue consumer, other code — goes through it.
 *
 * A singleton is attached to as an instance. A provider whose instances Nest makes later
 * (request-scoped, transient, durable, or depending on one of those) is attached to through
 * its class prototype, so every instance made of it is covered.
 */
@Injectable()
export class AuditedMethodExplorer implements OnModuleInit, OnModuleDestroy, ScopedMethodRunner {
  private readonly logger = new Logger('Audit');
  /** Units whose handler call has begun: a later call of the same method is a nested one. */
  private readonly handlerCalls = new WeakSet<UnitOfWork>();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly context: AuditContext,
    private readonly recorder: AuditRecorder,
    private readonly intents: AuditedIntentFactory,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
  ) {}

  /** The prototypes of scoped providers this application is attached to. */
  private readonly scoped = new Set<ScopedMethodRunners>();

  onModuleInit(): void {
    if (!this.options.enabled) return;
    for (const wrapper of this.discovery.getProviders()) {
      if (wrapper.isDependencyTreeStatic() && !wrapper.isTransient) {
        this.attach(wrapper.instance);
        continue;
      }
      const prototype = this.classPrototype(wrapper);
      if (!prototype || !this.hasAuditedMethods(prototype)) continue;
      const runners = ScopedMethodRunners.of(prototype);
      runners.add(this);
      this.scoped.add(runners);
      // Transient instances made at start-up (injected into singletons) are this
      // application's for good: attached like singletons, so that a call outside any unit
      // of work (a job) is this application's even when another one provides the class.
      if (wrapper.isTransient) for (const made of wrapper.getStaticTransientInstances()) this.attach(made?.instance);
    }
  }

  /** Makes this application the runner of an instance's `@Audited` methods (once). */
  private attach(instance: unknown): void {
    if (!instance || typeof instance !== 'object' || !this.hasAuditedMethods(Object.getPrototypeOf(instance) as object)) return;
    if (!Object.prototype.hasOwnProperty.call(instance, AUDITED_METHOD_RUNNER)) {
      Object.defineProperty(instance, AUDITED_METHOD_RUNNER, { value: this, enumerable: false });
    }
  }

  onModuleDestroy(): void {
    for (const runners of this.scoped) runners.remove(this);
    this.scoped.clear();
  }

  isRunningUnit(): boolean {
    return this.context.current() !== undefined;
  }

  /**
   * The class of a provider made per request or per consumer: its metatype, for a class
   * provider. A factory's product is not known before it is made (its instance stands in
   * when Nest made one at start-up).
   */
  private classPrototype(wrapper: ProviderWrapper): object | undefined {
    if (!wrapper.inject && typeof wrapper.metatype === 'function' && typeof wrapper.metatype.prototype === 'object') {
      return wrapper.metatype.prototype as object;
    }
    const instance = wrapper.instance as unknown;
    return instance && typeof instance === 'object' ? (Object.getPrototypeOf(instance) as object) : undefined;
  }

  private hasAuditedMethods(prototype: object): boolean {
    const methods = prototype as Record<string, unknown>;
    return this.scanner
      .getAllMethodNames(prototype)
      .some((name) => isAuditedMethod(methods[name]));
  }

  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[], method?: (...args: unknown[]) => unknown): unknown {
    const current = this.context.current();
    // A call made after the current unit stopped taking events (a timer, an un-awaited
    // promise a request left running) is late work: the system's, not the request's user's.
    const parent = current?.isLive ? current : undefined;
    // A provider that is also a transport handler (a GraphQL resolver, a WebSocket
    // gateway): the interceptor has made this very call its unit's handler already.
    if (parent && parent.audited === audited && !parent.handlerSettled && !this.handlerCalls.has(parent)) {
      this.handlerCalls.add(parent);
      return original.apply(self, args);
    }
    // @AuditSource on the method wins over the class's (above or below @Audited: the metadata is on the function called either way).
    const source = this.reflector.getAllAndOverride<string | undefined>(AUDIT_SOURCE_METADATA, [method ?? original, self.constructor as () => unknown]);
    const unit = new UnitOfWork(
      {
        source: source ?? parent?.source ?? (current ? 'system' : 'job'),
        actor: parent ? () => parent.resolveActor() : { type: 'system' },
        actorPure: parent?.actorIsPure ?? true,
        request: parent ? { ...parent.request } : { requestId: uuidv7() },
        requestObject: parent?.requestObject,
        body: parent?.body,
        parent,
        // Left running after its caller's unit stopped taking events (not awaited): late work.
        outlived: { source: source ?? 'system' },
      },
      current?.originForOpened,
    );
    unit.beginHandler(audited, undefined, args);
    return this.context.run(unit, () => {
      let result: unknown;
      try {
        result = original.apply(self, args);
      } catch (error) {
        this.finish(unit, args, 'failure', error).catch(() => undefined);
        throw error;
      }
      if (result && typeof (result as PromiseLike<unknown>).then === 'function') {
        return Promise.resolve(result).then(
          async (value) => {
            await this.finish(unit, args, 'success', value);
            return value;
          },
          async (error: unknown) => {
            await this.finish(unit, args, 'failure', error).catch(() => undefined);
            throw error;
          },
        );
      }
      // A synchronous method cannot wait for storage: its event is stored right after.
      this.finish(unit, args, 'success', result).catch((error: unknown) =>
        this.logger.error(`@Audited("${audited.action}"): ${(error as Error).message}`),
      );
      return result;
    });
  }

  /** Adds the call's event and settles its unit (stored at once, or after the caller's transaction). */
  private finish(unit: UnitOfWork, args: unknown[], outcome: 'success' | 'failure', value: unknown): Promise<void> {
    // Ended after its caller's unit: its event is late work (see `UnitOfWork.followParent`).
    unit.followParent();
    this.intents.settle(unit, unit.audited!, args, outcome, value);
    return this.recorder.end(unit);
  }
}
