import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { AUDIT_RESOLVED_OPTIONS, AUDIT_SOURCE_METADATA, AUDITED_METADATA } from '../audit.constants.js';
import { AuditContext } from '../context/audit-context.js';
import { UnitOfWork } from '../context/unit-of-work.js';
import type { AuditedMetadata } from '../decorators/audited.decorator.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditRecorder } from '../service/audit-recorder.js';
import { AUDITED_METHOD_RUNNER, type AuditedMethodRunner } from './audited-method.js';
import { AuditedIntentFactory } from './audited-intent.factory.js';

/**
 * Attaches itself to every provider (not controller) that has `@Audited` methods, and
 * runs each call of such a method as a unit of work: source `job` with a `system` actor
 * when called outside any unit, else the surrounding unit's source, actor and request.
 * The call's changes are claimed by its event. Whoever calls the method — Nest's
 * scheduler, a queue consumer, other code — goes through it.
 */
@Injectable()
export class AuditedMethodExplorer implements OnModuleInit, AuditedMethodRunner {
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

  onModuleInit(): void {
    if (!this.options.enabled) return;
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as Record<PropertyKey, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object;
      const audited = this.scanner
        .getAllMethodNames(prototype)
        .some((name) => typeof instance[name] === 'function' && this.reflector.get(AUDITED_METADATA, instance[name] as () => unknown));
      if (audited && !Object.prototype.hasOwnProperty.call(instance, AUDITED_METHOD_RUNNER)) {
        Object.defineProperty(instance, AUDITED_METHOD_RUNNER, { value: this, enumerable: false });
      }
    }
  }

  call(self: object, original: (...args: unknown[]) => unknown, audited: AuditedMetadata, args: unknown[]): unknown {
    const parent = this.context.current();
    // A provider that is also a transport handler (a GraphQL resolver, a WebSocket
    // gateway): the interceptor has made this very call its unit's handler already.
    if (parent && parent.audited === audited && !parent.handlerSettled && !this.handlerCalls.has(parent)) {
      this.handlerCalls.add(parent);
      return original.apply(self, args);
    }
    const source = this.reflector.get<string | undefined>(AUDIT_SOURCE_METADATA, self.constructor as () => unknown);
    const unit = new UnitOfWork({
      source: source ?? parent?.source ?? 'job',
      actor: parent ? () => parent.resolveActor() : { type: 'system' },
      actorPure: parent?.actorIsPure ?? true,
      request: parent ? { ...parent.request } : { requestId: uuidv7() },
      requestObject: parent?.requestObject,
      body: parent?.body,
      parent,
    });
    unit.beginHandler(audited, undefined);
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
    this.intents.settle(unit, unit.audited!, args, outcome, value);
    return this.recorder.end(unit);
  }
}
