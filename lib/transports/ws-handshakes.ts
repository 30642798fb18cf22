import {
  Inject,
  Injectable,
  Optional,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import type { AuditHeaders } from './transport-request.interface.js';

/** The HTTP request that opened a WebSocket connection, as far as the module reads it. */
export interface WsHandshake {
  headers: AuditHeaders;
  /** The socket peer's address. */
  address?: string;
  url?: string;
  /** The request object itself, when there is one (for a `user` set on it). */
  request?: object;
}

interface UpgradeRequest {
  headers: AuditHeaders;
  url?: string;
  socket?: { remoteAddress?: string } | null;
}

interface UpgradeSource {
  listenerCount(event: 'upgrade'): number;
  prependListener(event: 'upgrade', listener: (request: UpgradeRequest) => void): unknown;
  off(event: 'upgrade', listener: (request: UpgradeRequest) => void): unknown;
}

/** A socket.io `Socket` keeps its handshake; a `ws` WebSocket keeps only its net socket. */
interface WsClientLike {
  handshake?: { headers?: AuditHeaders; address?: string; url?: string };
  request?: UpgradeRequest;
  _socket?: { remoteAddress?: string } | null;
}

/**
 * Finds the handshake of a WebSocket client. socket.io keeps it on the socket. The
 * `ws` package (`@nestjs/platform-ws`) keeps nothing of the upgrade request, so the
 * module remembers the upgrade requests that reach the application's HTTP server,
 * by their socket, for as long as the socket lives. A gateway on a port of its own
 * has a server the module cannot see: its clients are known by socket address only.
 */
@Injectable()
export class WsHandshakes implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly requests = new WeakMap<object, UpgradeRequest>();
  private server?: UpgradeSource;
  private readonly remember = (request: UpgradeRequest): void => {
    if (request.socket) this.requests.set(request.socket, request);
  };

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.options.enabled) return;
    const server = this.adapterHost?.httpAdapter?.getHttpServer?.() as Partial<UpgradeSource> | undefined;
    if (!server || typeof server.prependListener !== 'function' || typeof server.listenerCount !== 'function') return;
    // Only where something accepts upgrades (a gateway on the application's port, a
    // GraphQL subscription server): an `upgrade` listener of ours alone would keep
    // upgrade requests that nobody handles open instead of closed.
    if (server.listenerCount('upgrade') === 0) return;
    this.server = server as UpgradeSource;
    this.server.prependListener('upgrade', this.remember);
  }

  onApplicationShutdown(): void {
    this.server?.off('upgrade', this.remember);
    this.server = undefined;
  }

  /** The handshake of `client`, or what is known of it. */
  of(client: unknown): WsHandshake | undefined {
    if (!client || typeof client !== 'object') return undefined;
    const socket = client as WsClientLike;
    if (socket.handshake && typeof socket.handshake === 'object') {
      const { headers, address, url } = socket.handshake;
      return {
        headers: headers ?? {},
        address: address ?? socket.request?.socket?.remoteAddress ?? undefined,
        url,
        request: socket.request,
      };
    }
    const net = socket._socket;
    const upgrade = (net && this.requests.get(net)) ?? socket.request;
    if (upgrade) {
      return { headers: upgrade.headers ?? {}, address: upgrade.socket?.remoteAddress ?? undefined, url: upgrade.url, request: upgrade };
    }
    return net?.remoteAddress ? { headers: {}, address: net.remoteAddress } : undefined;
  }
}
