import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { answerCallsOfGrpcClientsMadeBefore, deliverClientRepliesInSubscriberContext } from '../integrations/nest-client-proxy-context.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';

/**
 * Replies of the app's microservice clients (`ClientProxy.send()` and `emit()`, the methods
 * of `ClientGrpc.getService()`) reach the operators piped after them in the unit of work
 * that subscribed, not in the unit of the request that opened the client's connection;
 * the calls of the `@grpc/grpc-js` client `ClientGrpc.getClientByServiceName()` gives
 * call back in the unit that made them. Set up at start-up, only if
 * `@nestjs/microservices` is installed.
 */
@Injectable()
export class ClientReplies implements OnModuleInit {
  private readonly logger = new Logger('Audit');

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly discovery: DiscoveryService,
  ) {}

  async onModuleInit(): Promise<void> {
    if (!this.options.enabled) return;
    if (!(await deliverClientRepliesInSubscriberContext())) return;
    // Every provider is made before any init: a raw gRPC client taken in a constructor or
    // a factory came from the unpatched getClientByServiceName (in the process's first app).
    const singletons = this.discovery.getProviders().filter((wrapper) => wrapper.isDependencyTreeStatic() && !wrapper.isTransient);
    await answerCallsOfGrpcClientsMadeBefore(singletons.map((wrapper): unknown => wrapper.instance));
    this.logger.debug?.('microservice client replies delivered in their subscriber’s unit');
  }
}
