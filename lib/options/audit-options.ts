import { describe } from '../read/audit-query.js';
import type {
  AuditActorResolver,
  AuditEntityRef,
  AuditModuleOptions,
  AuditRequest,
} from '../interfaces/audit-module-options.interface.js';
import type { DataSource } from 'typeorm';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';
import { compileTrustProxy, MAX_FORWARDED_HOPS, TRUST_NO_PROXY, type TrustHop } from '../context/client-ip.js';
import { normaliseName, Redactor } from '../events/redaction.js';
import { resolveIntegrity, type ResolvedIntegrity } from '../integrity/integrity-options.js';
import { resolveRetention, type ResolvedRetention } from '../retention/retention-options.js';
import { ActorPseudonymizer, hmacKey } from '../events/actor-pseudonyms.js';
import { SecretKeys } from '../capture/secret-keys.js';

/**
 * Route parameter name fragments that mark a parameter's value as secret in the recorded
 * path (the default of `secretPathParams`), besides the names the redaction rules mask.
 */
export const DEFAULT_SECRET_PATH_PARAMS: readonly string[] = [
  'token',
  'code',
  'secret',
  'key',
  'password',
  'signature',
  'otp',
  'hash',
  'nonce',
];

/** The default actor resolver: `request.user` as a user, else anonymous. */
export const defaultActorResolver: AuditActorResolver = (request: AuditRequest): AuditActor | undefined => {
  const user = request.user;
  if (!user || typeof user !== 'object') return undefined;
  const id = user['id'] ?? user['sub'];
  const display = user['email'] ?? user['username'];
  return {
    type: 'user',
    ...(id !== undefined && id !== null ? { id: String(id) } : {}),
    ...(typeof display === 'string' ? { display } : {}),
  };
};

/** Options with every default applied, plus what is derived from them. */
export interface ResolvedAuditOptions {
  actor: AuditActorResolver;
  /** `undefined`: the option was not given, the framework's own proxy setting applies. */
  trustProxy: TrustHop;
  redactor: Redactor;
  /** Whether a route parameter's value is masked in the recorded path, by the parameter's name. */
  isSecretPathParam: (name: string) => boolean;
  recordPath: boolean;
  excludeFields: Map<string, Set<string>>;
  excludeEntities: readonly AuditEntityRef[];
  includeEntities: readonly AuditEntityRef[] | undefined;
  failOpen: boolean;
  requestIdHeader: string;
  maxHeaderLength: number;
  maxContextBytes: number;
  recordQueryString: boolean;
  recordBody: boolean;
  maxCriteriaRows: number;
  maxChangesPerEvent: number;
  maxEventBytes: number;
  maxQueuedEvents: number;
  queueTimeout: number;
  storeTimeout: number;
  recoverAfter: number;
  shutdownTimeout: number;
  enabled: boolean;
  /** Data sources to capture (names or instances); `undefined`: every TypeORM data source of the app. */
  captureDataSources: ReadonlyArray<string | DataSource> | undefined;
  /** Tamper evidence; `undefined`: no tree is kept. */
  integrity: ResolvedIntegrity | undefined;
  /** Set when actor ids are stored as pseudonyms (`pseudonymize`). */
  pseudonymizer: ActorPseudonymizer | undefined;
  /** Primary keys named like a secret: how their values are stored (digested). */
  secretKeys: SecretKeys;
  /** Events older than `maxAge` purged every `schedule`; `undefined`: kept for ever. */
  retention: ResolvedRetention | undefined;
}

const KNOWN_OPTIONS: ReadonlySet<string> = new Set<keyof AuditModuleOptions>([
  'actor',
  'trustProxy',
  'redact',
  'excludeFields',
  'excludeEntities',
  'includeEntities',
  'failOpen',
  'requestIdHeader',
  'maxHeaderLength',
  'maxContextBytes',
  'recordQueryString',
  'recordPath',
  'secretPathParams',
  'recordBody',
  'maxCriteriaRows',
  'maxChangesPerEvent',
  'maxEventBytes',
  'maxQueuedEvents',
  'queueTimeout',
  'storeTimeout',
  'recoverAfter',
  'shutdownTimeout',
  'enabled',
  'captureDataSources',
  'integrity',
  'pseudonymize',
  'retention',
]);

const isPositiveInt = (value: unknown, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= max;

function entityRefs(option: string, value: unknown): AuditEntityRef[] {
  if (!Array.isArray(value)) throw new InvalidAuditOptionsError(option, 'must be an array of entity classes or names');
  for (const ref of value) {
    if (typeof ref !== 'function' && (typeof ref !== 'string' || ref.length === 0)) {
      throw new InvalidAuditOptionsError(option, `${JSON.stringify(ref)} is neither an entity class nor a name`);
    }
  }
  return value as AuditEntityRef[];
}

function dataSourceRefs(value: unknown): Array<string | DataSource> {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidAuditOptionsError('captureDataSources', 'must be a non-empty array of data source names or DataSource instances');
  }
  for (const ref of value) {
    const isDataSource = ref !== null && typeof ref === 'object' && typeof (ref as { getMetadata?: unknown }).getMetadata === 'function';
    if (!isDataSource && (typeof ref !== 'string' || ref.length === 0)) {
      throw new InvalidAuditOptionsError('captureDataSources', `${JSON.stringify(ref)} is neither a data source name nor a DataSource`);
    }
  }
  return value as Array<string | DataSource>;
}

function booleanOption(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidAuditOptionsError(option, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function intOption(option: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!isPositiveInt(value, max)) throw new InvalidAuditOptionsError(option, `must be a whole number from 1 to ${max}, got ${describe(value)}`);
  return value;
}

function pseudonymizer(value: unknown): ActorPseudonymizer | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidAuditOptionsError('pseudonymize', 'must be an object such as { key: process.env.AUDIT_ACTOR_KEY }');
  }
  const raw = value as Record<string, unknown>;
  for (const name of Object.keys(raw)) {
    if (name !== 'key' && name !== 'keepDisplay') {
      throw new InvalidAuditOptionsError(`pseudonymize.${name}`, 'is not an option of pseudonymize (known: key, keepDisplay)');
    }
  }
  const keepDisplay = booleanOption('pseudonymize.keepDisplay', raw['keepDisplay'], false);
  const key = raw['key'];
  if (key === undefined || key === null || key === '') {
    throw new InvalidAuditOptionsError('pseudonymize.key', 'is required: a key of at least 32 bytes (Buffer, secret KeyObject or base64 string) or a function (actor) => key');
  }
  if (typeof key === 'function') return new ActorPseudonymizer(key as ConstructorParameters<typeof ActorPseudonymizer>[0], keepDisplay);
  const checked = hmacKey(key);
  if ('problem' in checked) throw new InvalidAuditOptionsError('pseudonymize.key', checked.problem);
  return new ActorPseudonymizer(checked.key, keepDisplay);
}

/**
 * Merges user options over the defaults and validates them: the one place where
 * defaults live. Throws `InvalidAuditOptionsError` naming the first bad option.
 */
export function resolveAuditOptions(options: AuditModuleOptions | undefined | null): ResolvedAuditOptions {
  const raw = (options ?? {}) as Record<string, unknown>;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidAuditOptionsError('options', 'must be an object');
  for (const key of Object.keys(raw)) {
    if (!KNOWN_OPTIONS.has(key) && key !== 'dataSource' && key !== 'isGlobal') {
      throw new InvalidAuditOptionsError(key, `is not an option of AuditModule (known: ${[...KNOWN_OPTIONS, 'dataSource'].join(', ')})`);
    }
  }

  if (raw['actor'] !== undefined && typeof raw['actor'] !== 'function') {
    throw new InvalidAuditOptionsError('actor', 'must be a function (request) => { type, id?, display? }');
  }

  // Not given: trust no hop, whatever the framework trusts (the socket's address).
  let trustProxy: TrustHop = TRUST_NO_PROXY;
  const trust = raw['trustProxy'];
  if (trust !== undefined) {
    if (typeof trust === 'number' && !(Number.isInteger(trust) && trust >= 0)) {
      throw new InvalidAuditOptionsError('trustProxy', `a hop count must be a whole number of 0 or more, got ${trust}`);
    }
    if (typeof trust === 'number' && trust > MAX_FORWARDED_HOPS) {
      throw new InvalidAuditOptionsError('trustProxy', `a hop count must be from 0 to ${MAX_FORWARDED_HOPS}, got ${trust} (use true to trust every hop)`);
    }
    if (!['boolean', 'number', 'string'].includes(typeof trust) && !Array.isArray(trust)) {
      throw new InvalidAuditOptionsError('trustProxy', 'must be a boolean, a hop count, or a list of addresses/CIDR ranges');
    }
    try {
      trustProxy = compileTrustProxy(trust as boolean | number | string | string[]);
    } catch (error) {
      throw new InvalidAuditOptionsError('trustProxy', (error as Error).message);
    }
  }

  const redact = raw['redact'] ?? [];
  if (!Array.isArray(redact) || redact.some((name) => typeof name !== 'string' || name.length === 0)) {
    throw new InvalidAuditOptionsError('redact', 'must be an array of field names');
  }

  const secretPathParams = raw['secretPathParams'] ?? DEFAULT_SECRET_PATH_PARAMS;
  if (!Array.isArray(secretPathParams) || secretPathParams.some((name) => typeof name !== 'string' || name.trim().length === 0)) {
    throw new InvalidAuditOptionsError('secretPathParams', `must be an array of parameter names or name fragments, got ${JSON.stringify(secretPathParams)}`);
  }
  const redactor = new Redactor(redact as string[]);
  const fragments = (secretPathParams as string[]).map(normaliseName);
  const isSecretPathParam = (name: string): boolean => {
    const normalised = normaliseName(name);
    return redactor.isSecret(name) || fragments.some((fragment) => normalised.includes(fragment));
  };

  const excludeFields = new Map<string, Set<string>>();
  const fieldsOption = raw['excludeFields'] ?? {};
  if (typeof fieldsOption !== 'object' || fieldsOption === null || Array.isArray(fieldsOption)) {
    throw new InvalidAuditOptionsError('excludeFields', 'must map entity names to arrays of field names');
  }
  for (const [entity, fields] of Object.entries(fieldsOption)) {
    if (!Array.isArray(fields) || fields.some((field) => typeof field !== 'string')) {
      throw new InvalidAuditOptionsError('excludeFields', `the entry for "${entity}" must be an array of field names`);
    }
    excludeFields.set(entity, new Set(fields as string[]));
  }

  const requestIdHeader = raw['requestIdHeader'] ?? 'x-request-id';
  if (typeof requestIdHeader !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(requestIdHeader)) {
    throw new InvalidAuditOptionsError('requestIdHeader', `must be a header name, got ${JSON.stringify(requestIdHeader)}`);
  }

  let actorPseudonymizer: ActorPseudonymizer | undefined;
  return {
    actor: (raw['actor'] as AuditActorResolver | undefined) ?? defaultActorResolver,
    trustProxy,
    redactor,
    isSecretPathParam,
    excludeFields,
    excludeEntities: raw['excludeEntities'] === undefined ? [] : entityRefs('excludeEntities', raw['excludeEntities']),
    includeEntities: raw['includeEntities'] === undefined ? undefined : entityRefs('includeEntities', raw['includeEntities']),
    failOpen: booleanOption('failOpen', raw['failOpen'], false),
    requestIdHeader: requestIdHeader.toLowerCase(),
    maxHeaderLength: intOption('maxHeaderLength', raw['maxHeaderLength'], 512, 8192),
    maxContextBytes: intOption('maxContextBytes', raw['maxContextBytes'], 16384, 1048576),
    recordQueryString: booleanOption('recordQueryString', raw['recordQueryString'], false),
    recordPath: booleanOption('recordPath', raw['recordPath'], true),
    recordBody: booleanOption('recordBody', raw['recordBody'], false),
    maxCriteriaRows: intOption('maxCriteriaRows', raw['maxCriteriaRows'], 1000, 1000000),
    maxChangesPerEvent: intOption('maxChangesPerEvent', raw['maxChangesPerEvent'], 1000, 100000),
    maxEventBytes: intOption('maxEventBytes', raw['maxEventBytes'], 524288, 16777216),
    maxQueuedEvents: intOption('maxQueuedEvents', raw['maxQueuedEvents'], 50000, 10000000),
    queueTimeout: intOption('queueTimeout', raw['queueTimeout'], 10000, 600000),
    storeTimeout: intOption('storeTimeout', raw['storeTimeout'], 20000, 600000),
    recoverAfter: intOption('recoverAfter', raw['recoverAfter'], 30000, 86400000),
    shutdownTimeout: intOption('shutdownTimeout', raw['shutdownTimeout'], 10000, 600000),
    enabled: booleanOption('enabled', raw['enabled'], true),
    captureDataSources: raw['captureDataSources'] === undefined ? undefined : dataSourceRefs(raw['captureDataSources']),
    integrity: resolveIntegrity(raw['integrity']),
    retention: resolveRetention(raw['retention']),
    pseudonymizer: (actorPseudonymizer = pseudonymizer(raw['pseudonymize'])),
    // After it: a digest of a secret key is keyed by the pseudonymisation key, when there is one.
    secretKeys: new SecretKeys(redactor, actorPseudonymizer?.sharedKey),
  };
}
