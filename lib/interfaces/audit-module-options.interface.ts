import type { DataSource } from 'typeorm';
import type { AuditActor } from './audit-event.interface.js';

/**
 * The request object the actor resolver receives: Express's `Request`, Fastify's
 * `FastifyRequest`, or the request found in a GraphQL / WebSocket / RPC context.
 */
export interface AuditRequest {
  user?: Record<string, unknown> | null;
  headers?: Record<string, string | string[] | undefined>;
  [key: string]: unknown;
}

/** Resolves the actor of a request. Return `undefined` for "anonymous". */
export type AuditActorResolver = (
  request: AuditRequest,
) => AuditActor | null | undefined | Promise<AuditActor | null | undefined>;

/**
 * Which proxies may set `X-Forwarded-For`:
 * - `false`: none; the IP is the socket's remote address.
 * - `true`: every hop; the left-most address is the client.
 * - a number `n`: the `n` closest hops.
 * - addresses or CIDR ranges (`'10.0.0.0/8'`, `'::1'`, `'loopback'`): only those.
 */
export type AuditTrustProxy = boolean | number | string | readonly string[];

/** An entity class or its name. */
export type AuditEntityRef = string | (abstract new (...args: never[]) => unknown);

/** Options of `AuditModule.forRoot()` / `forRootAsync()`. */
export interface AuditModuleOptions {
  /**
   * Resolves the actor from the request, when the event is built (so a guard that
   * sets `request.user` is seen).
   * @default reads `request.user`: `{ type: 'user', id: user.id ?? user.sub, display: user.email ?? user.username }`, else `{ type: 'anonymous' }`
   */
  actor?: AuditActorResolver;
  /**
   * Which hops may set `X-Forwarded-For`.
   * @default false
   */
  trustProxy?: AuditTrustProxy;
  /**
   * Extra field names to mask as `[REDACTED]` in `changes` and `context`, at any depth.
   * They add to the built-in list (password, token, secret, authorization, api key, …).
   * Matching ignores case, `_` and `-`.
   * @default []
   */
  redact?: string[];
  /**
   * Per-entity field exclusion: those fields never appear in `changes`.
   * @default {}
   */
  excludeFields?: Record<string, string[]>;
  /**
   * Entities whose changes are never captured (by class or entity name).
   * @default []
   */
  excludeEntities?: AuditEntityRef[];
  /**
   * When set, only these entities' changes are captured.
   * @default undefined (all entities)
   */
  includeEntities?: AuditEntityRef[];
  /**
   * When `true`, a failure to store audit events is logged and the request goes on.
   * When `false` (fail-closed), the request fails too.
   * @default false
   */
  failOpen?: boolean;
  /**
   * Header to read (and echo) the request id from.
   * @default 'x-request-id'
   */
  requestIdHeader?: string;
  /**
   * Longest header value (user agent, request id, forwarded-for) kept, in characters.
   * @default 512
   */
  maxHeaderLength?: number;
  /**
   * Largest `context` accepted, in bytes of JSON.
   * @default 16384
   */
  maxContextBytes?: number;
  /**
   * Record the query string in `path`. Off by default: query strings carry tokens.
   * @default false
   */
  recordQueryString?: boolean;
  /**
   * Store the request body of `@Audited` HTTP calls in the event's `context.body`,
   * redacted and size-bounded. Off by default: bodies carry personal data and secrets.
   * @default false
   */
  recordBody?: boolean;
  /**
   * How many rows an update or delete by criteria reads for its before values; past
   * it the change is recorded as partial.
   * @default 1000
   */
  maxCriteriaRows?: number;
  /**
   * Most changes one stored event carries. A unit of work with more is stored as several
   * events of the same action, sharing the request id and numbered in `context.part`.
   * @default 1000
   */
  maxChangesPerEvent?: number;
  /**
   * Largest `changes` of one stored event, in bytes of JSON; a unit past it is split like
   * one past `maxChangesPerEvent`, and a single change past it is stored as a partial summary.
   * @default 524288 (512 KiB)
   */
  maxEventBytes?: number;
  /**
   * Most events waiting in the writer's queue. Past it, callers wait for room
   * (back-pressure) for up to `queueTimeout`, then fail (fail-closed).
   * @default 50000
   */
  maxQueuedEvents?: number;
  /**
   * How long, in milliseconds, a caller waits for room in a full writer queue.
   * @default 10000
   */
  queueTimeout?: number;
  /**
   * After how many milliseconds without a heartbeat an app instance is taken for dead and
   * its journal rows are recovered into events by another instance (or by itself after
   * a restart).
   * @default 30000
   */
  recoverAfter?: number;
  /**
   * How long, in milliseconds, shutdown waits for in-flight units of work and the writer's
   * queue to be stored before the data source is closed.
   * @default 10000
   */
  shutdownTimeout?: number;
  /**
   * Turn the module off without removing it (no events, no capture).
   * @default true
   */
  enabled?: boolean;
  /**
   * The TypeORM data sources whose changes are captured, by name (as given to
   * `TypeOrmModule.forRoot({ name })`, `'default'` for the unnamed one) or as `DataSource`
   * instances. Each captured data source other than the audit one (`dataSource`) keeps
   * its own `audit_journal`: add `AuditJournalEntity` to its `entities`. An unknown name
   * fails start-up.
   * @default every TypeORM data source of the app
   * @example
   * AuditModule.forRoot({ dataSource: 'audit', captureDataSources: ['default', 'billing'] })
   */
  captureDataSources?: Array<string | DataSource>;
}

/** Options that wire the module and so must be known statically, also in `forRootAsync`. */
export interface AuditModuleExtras {
  /**
   * Name of the TypeORM data source that stores the audit trail (`audit_log`, the
   * instances' leases). Changes are captured on every data source (`captureDataSources`).
   * @default the default data source
   */
  dataSource?: string;
}
