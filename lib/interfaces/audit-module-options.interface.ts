import type { KeyObject } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { AuditActor } from './audit-event.interface.js';
import type { AuditIntegrityOptions } from './audit-integrity.interface.js';

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

/**
 * A pseudonymisation key: a `Buffer` (or other `Uint8Array`), a secret `KeyObject`
 * (`createSecretKey`), or a string holding the key in base64 or base64url (a string of
 * hexadecimal digits is refused: pass `Buffer.from(hex, 'hex')`). At least 32 bytes.
 */
export type AuditPseudonymKey = Buffer | Uint8Array | KeyObject | string;

/**
 * Gives the key of one actor (per-person keys): return `undefined` / `null` (or throw)
 * once that actor's key is destroyed. Called for each event stored and each query by a
 * clear id, never cached: keep it fast (an in-memory lookup) and synchronous.
 */
export type AuditPseudonymKeyFunction = (actor: { type: string; id: string }) => AuditPseudonymKey | null | undefined;

/** The `pseudonymize` option: actor ids stored as keyed pseudonyms. */
export interface AuditPseudonymizeOptions {
  /**
   * The HMAC-SHA-256 key (at least 32 bytes), or a function giving the key of one actor.
   * With one key, destroying it erases every actor at once; with per-actor keys,
   * destroying one actor's key erases that actor.
   */
  key: AuditPseudonymKey | AuditPseudonymKeyFunction;
  /**
   * Also store `actor.display`. Off by default: a display is usually a name or an e-mail.
   * @default false
   */
  keepDisplay?: boolean;
}

/** Options of `AuditModule.forRoot()` / `forRootAsync()`. */
export interface AuditModuleOptions {
  /**
   * Resolves the actor from the request, when the event is built (so a guard that
   * sets `request.user` is seen).
   * @default reads `request.user`: `{ type: 'user', id: user.id ?? user.sub, display: user.email ?? user.username }`, else `{ type: 'anonymous' }`
   */
  actor?: AuditActorResolver;
  /**
   * Which hops may set `X-Forwarded-For`. The module walks the header from its right end
   * (where each proxy appends the address it saw) to the first untrusted hop; a header
   * longer than `maxHeaderLength × 4` is read from its right end too, its left part (which
   * the client wrote) dropped.
   *
   * When not given, no hop is trusted: the IP recorded is the socket's address, whatever
   * the framework trusts (Express's `trust proxy`, Fastify's `trustProxy` are not read), so
   * that a client-chosen `X-Forwarded-For` never becomes the record's IP by default. Behind
   * a proxy, name it here (e.g. `'loopback'`, a hop count from 0 to 32, or its addresses).
   * @default false (the socket's address)
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
   * Per-entity field exclusion: those fields never appear in `changes`. Keys are entity
   * names (`metadata.name`, e.g. `Order`), fields property names or paths (a to-one or
   * many-to-many relation by its name). Checked at start-up against the data source's
   * entities: an unknown entity or field fails start-up, naming it and its near matches.
   * @default {}
   */
  excludeFields?: Record<string, string[]>;
  /**
   * Entities whose changes are never captured (by class, entity name or table name).
   * Checked at start-up: a name no entity of the data source has fails start-up.
   * @default []
   */
  excludeEntities?: AuditEntityRef[];
  /**
   * When set, only these entities' changes are captured (by class, entity name or table
   * name). Checked at start-up: a name no entity of the data source has fails start-up.
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
   * Secret-looking parameters are masked, and with `pseudonymize` so is `actorId`.
   * @default false
   */
  recordQueryString?: boolean;
  /**
   * Record the request's path (`path`). Set `false` to leave it out of every event; the
   * route pattern (`route`, e.g. `/auth/reset/:token`) is still recorded.
   * @default true
   */
  recordPath?: boolean;
  /**
   * Route parameters whose value is masked as `[REDACTED]` in the recorded `path`, by name:
   * a parameter is secret when its name contains one of these fragments (ignoring case,
   * `_` and `-`), or when the redaction rules mask a field of that name (`redact` and the
   * built-in list). `/auth/reset/:token` is recorded as `/auth/reset/[REDACTED]`.
   * Giving the option replaces the default list (the redaction rules still apply).
   * @default ['token', 'code', 'secret', 'key', 'password', 'signature', 'otp', 'hash', 'nonce']
   */
  secretPathParams?: string[];
  /**
   * Store the request body of `@Audited` HTTP calls in the event's `context.body`,
   * redacted and size-bounded. Off by default: bodies carry personal data and secrets.
   *
   * For a GraphQL resolver call, `context.body` is `{ operationType, operationName,
   * variables }` (the variables redacted by name like any field), never the query text,
   * which may carry secrets as literals. A variable whose name is neutral is stored as
   * given even when it feeds a secret argument (`changePassword(current: $a)`): name
   * variables after what they hold, or leave `recordBody` off.
   * @default false
   */
  recordBody?: boolean;
  /**
   * How many rows an update or delete by criteria reads for its before values; past
   * it the change is recorded as partial. Also how many rows a delete reads, in all, of
   * what the database deletes or changes with it (`ON DELETE CASCADE` / `SET NULL`
   * foreign keys, many-to-many links); past it each table cut short is recorded as a
   * partial change with the count of rows not read.
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
   * How long, in milliseconds, a response (or a message's reply, a job) waits for its
   * events to be stored once its unit has ended — a database that stops answering holds
   * the statement for ever. Past it, fail-closed fails the answer (500, or the call errors)
   * with `AuditWriteError` caused by `AuditStoreTimeoutError`; fail-open answers as the
   * handler did. Either way the store goes on, and the events are stored once the database
   * answers (or retried, or recovered from the journal).
   * @default 20000
   */
  storeTimeout?: number;
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
  /**
   * Tamper evidence: every stored event gets a gapless `seq` and a leaf in a Merkle tree
   * (`audit_tree`), and signed checkpoints of the tree are stored (`audit_checkpoint`) and
   * handed to `anchor`, so that `AuditService.verify()` and `npx nestjs-system-audit
   * verify` find any row changed, removed, inserted or reordered afterwards.
   * @default off: no tree is kept
   * @example
   * AuditModule.forRoot({
   *   integrity: { signingKey: process.env.AUDIT_SIGNING_KEY, origin: 'audit.example.com/orders', anchor: fileAnchor('/var/lib/audit/checkpoints') },
   * })
   */
  integrity?: AuditIntegrityOptions;
  /**
   * Store actor ids as keyed pseudonyms, never in the clear: `actor_id` holds `hmac:` +
   * base64url(HMAC-SHA-256(key, `${type}:${id}`)) (48 characters), and `actor_display` is
   * left empty unless `keepDisplay`. Destroying the key (or one actor's key, with a key
   * function) erases the link between the stored rows and the person, without rewriting
   * them. An actor whose key is gone is stored with no id and `context.actorErased: true`.
   * `find({ actorId })` maps a clear id to its pseudonym (`actorType` is then required);
   * `AuditService.pseudonymOf()` gives it. IP, user agent, `changes`, `context` and
   * `reason` are not pseudonymised (see `redact` and `excludeFields`).
   * @default undefined (actor ids stored as given)
   * @example
   * AuditModule.forRoot({ pseudonymize: { key: process.env.AUDIT_ACTOR_KEY! } })
   */
  pseudonymize?: AuditPseudonymizeOptions;
  /**
   * Retention: every `schedule`, events older than `maxAge` are purged with
   * `AuditService.purge()` (in batches; with `integrity` on, the tree stays verifiable and
   * a signed purge record names the range). Durations in milliseconds or as text: `'400d'`,
   * `'12h'`, `'30m'`, `'45s'`.
   * @default undefined (events are kept for ever)
   * @example
   * AuditModule.forRoot({ retention: { maxAge: '400d', schedule: '1h' } })
   */
  retention?: AuditRetentionOptions;
}

/** The `retention` option. */
export interface AuditRetentionOptions {
  /** How long events are kept (e.g. `'400d'`, or milliseconds); at least one second. */
  maxAge: number | string;
  /** How often the purge runs in each instance. @default '1h' */
  schedule?: number | string;
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
