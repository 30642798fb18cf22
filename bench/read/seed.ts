import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { DataSource } from 'typeorm';
import { AuditLogEntity, AuditSubjectEntity } from 'nestjs-system-audit';
import { withMariadb } from '../support/mariadb.js';
import { withClient } from '../support/postgres.js';
import { copyField } from '../writer/writer-throughput.bench.js';

/** The databases the read benchmark seeds. */
export type ReadDatabase = 'postgres' | 'mariadb';

/** A seeded PRNG (mulberry32): the same seed, the same numbers, so that runs compare. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SeedActor {
  type: 'user' | 'service' | 'system';
  id: string;
  display: string;
}

export interface SeedTarget {
  type: TargetType;
  id: string;
}

const TARGET_TYPES = ['order', 'customer', 'invoice', 'product'] as const;
type TargetType = (typeof TARGET_TYPES)[number];
/** How many instances of each type: 100,000 targets in all. */
const TARGET_COUNTS: Record<TargetType, number> = { order: 40_000, customer: 25_000, invoice: 20_000, product: 15_000 };
const ENTITY: Record<TargetType, string> = { order: 'Order', customer: 'Customer', invoice: 'Invoice', product: 'Product' };
/** The other instances an event's changes may touch, per target type. */
const RELATED: Record<TargetType, TargetType[]> = {
  order: ['customer', 'product', 'invoice'],
  customer: ['order'],
  invoice: ['order', 'customer'],
  product: ['order'],
};
const FIELDS: Record<TargetType, string[]> = {
  order: ['status', 'totalCents', 'currency', 'shippingAddress', 'notes'],
  customer: ['email', 'name', 'phone', 'tier', 'blocked'],
  invoice: ['status', 'amountCents', 'dueDate', 'paidAt'],
  product: ['name', 'priceCents', 'stock', 'active', 'category'],
};
const VERBS = ['created', 'updated', 'deleted', 'viewed', 'exported', 'approved', 'rejected', 'archived', 'restored', 'commented'];
const ERRORS = [
  { name: 'ConflictException', status: 409, message: 'the resource was changed by someone else' },
  { name: 'ForbiddenException', status: 403, message: 'not allowed' },
  { name: 'BadRequestException', status: 400, message: 'validation failed' },
  { name: 'QueryFailedError', message: 'deadlock detected' },
];
const DAY = 86_400_000;

/** The seeded population, the same for every size: the bench draws its query parameters from it. */
export interface ReadPopulation {
  /** 5,000 actors: users, every 50th a service, every 500th (from 7) the system. */
  actors: SeedActor[];
  /** 100,000 targets: orders, customers, invoices, products. */
  targets: SeedTarget[];
  /** 40 actions, `<type>.<verb>`. */
  actions: string[];
  sources: string[];
  /** The events' time span: 90 days ending at `to`. */
  from: Date;
  to: Date;
}

export function readPopulation(): ReadPopulation {
  const actors: SeedActor[] = [];
  for (let i = 0; i < 5_000; i++) {
    const type = i % 500 === 7 ? 'system' : i % 50 === 0 ? 'service' : 'user';
    const id = type === 'user' ? String(10_000 + i) : `${type}-${i}`;
    actors.push({ type, id, display: type === 'user' ? `user${i}@example.com` : `${type} ${i}` });
  }
  const targets: SeedTarget[] = [];
  for (const type of TARGET_TYPES) for (let i = 1; i <= TARGET_COUNTS[type]; i++) targets.push({ type, id: String(i) });
  const to = new Date(Date.UTC(2026, 10, 1));
  return {
    actors,
    targets,
    actions: TARGET_TYPES.flatMap((type) => VERBS.map((verb) => `${type}.${verb}`)),
    sources: ['http', 'admin', 'job', 'rpc'],
    from: new Date(to.getTime() - 90 * DAY),
    to,
  };
}

/** An actor, the lower indexes far more active (a few heavy users, a long tail). */
export const drawActor = (population: ReadPopulation, random: () => number): SeedActor =>
  population.actors[Math.floor(population.actors.length * random() ** 2)]!;

/** A target of `type` (any type when omitted), the lower ids somewhat more often touched. */
export function drawTarget(population: ReadPopulation, random: () => number, type?: TargetType): SeedTarget {
  const kind = type ?? TARGET_TYPES[Math.floor(random() * TARGET_TYPES.length)]!;
  return { type: kind, id: String(1 + Math.floor(TARGET_COUNTS[kind] * random() ** 1.5)) };
}

const pick = <T>(items: readonly T[], random: () => number): T => items[Math.floor(random() * items.length)]!;

/** A UUID v7 whose time is `ms`, its other bits from `random`. */
function uuidv7At(ms: number, random: () => number): string {
  const hex = (value: number, digits: number): string => Math.floor(value).toString(16).padStart(digits, '0');
  const time = hex(ms, 12);
  return (
    `${time.slice(0, 8)}-${time.slice(8)}-7${hex(random() * 0x1000, 3)}-` +
    `${hex(0x8000 | (random() * 0x4000), 4)}-${hex(random() * 0x1000000, 6)}${hex(random() * 0x1000000, 6)}`
  );
}

/** One seeded event: the `audit_log` row and its `audit_subject` rows. */
export interface SeedEvent {
  row: AuditLogEntity;
  subjects: AuditSubjectEntity[];
}

/**
 * The events in time order: `n` spread evenly over the population's 90 days (with
 * jitter), ids UUID v7 of their `occurred_at`, about one in ten a failure.
 */
export function* seedEvents(population: ReadPopulation, n: number, seed = 20261101): Generator<SeedEvent> {
  const random = prng(seed);
  const start = population.from.getTime();
  const step = (population.to.getTime() - start) / n;
  for (let i = 0; i < n; i++) {
    const at = Math.floor(start + (i + random() * 0.999) * step);
    const actor = drawActor(population, random);
    const source =
      actor.type === 'user' ? (random() < 0.8 ? 'http' : 'admin') : actor.type === 'service' ? (random() < 0.7 ? 'rpc' : 'job') : 'job';
    const target = drawTarget(population, random);
    const verb = pick(VERBS, random);
    const failed = random() < 0.1;
    const changes: NonNullable<AuditLogEntity['changes']> = [];
    const subjects: AuditSubjectEntity[] = [];
    const id = uuidv7At(at, random);
    const occurredAt = new Date(at);
    if (!failed && verb !== 'viewed' && verb !== 'exported') {
      const count = 1 + Math.floor(random() * 3);
      const operation = verb === 'created' ? 'insert' : verb === 'deleted' ? 'delete' : 'update';
      let touched: SeedTarget = target;
      const seen = new Set<string>([`${target.type}:${target.id}`]);
      for (let c = 0; c < count; c++) {
        if (c > 0) {
          touched = drawTarget(population, random, pick(RELATED[target.type], random));
          if (seen.has(`${touched.type}:${touched.id}`)) continue;
          seen.add(`${touched.type}:${touched.id}`);
          subjects.push({ subjectType: ENTITY[touched.type], subjectId: touched.id, eventId: id, occurredAt });
        }
        const fields: Record<string, { from?: unknown; to?: unknown }> = {};
        const names = FIELDS[touched.type];
        const fieldCount = 1 + Math.floor(random() * 3);
        for (let f = 0; f < fieldCount; f++) {
          const name = pick(names, random);
          fields[name] = { from: Math.floor(random() * 1000), to: Math.floor(random() * 1000) };
        }
        changes.push({ entity: ENTITY[touched.type], id: touched.id, operation: c === 0 ? operation : 'update', fields });
      }
    }
    const web = source === 'http' || source === 'admin';
    const n3 = Math.floor(random() * 256);
    const row: AuditLogEntity = {
      id,
      occurredAt,
      action: `${target.type}.${verb}`,
      outcome: failed ? 'failure' : 'success',
      kind: 'intent',
      actorType: actor.type,
      actorId: actor.id,
      actorDisplay: actor.display,
      source,
      ip: web ? `10.${i % 256}.${n3}.${Math.floor(random() * 256)}` : null,
      userAgent: web ? 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36' : null,
      method: web ? (verb === 'viewed' || verb === 'exported' ? 'GET' : verb === 'created' ? 'POST' : verb === 'deleted' ? 'DELETE' : 'PATCH') : null,
      route: web ? `/${source === 'admin' ? 'admin/' : ''}${target.type}s/:id` : null,
      path: web ? `/${source === 'admin' ? 'admin/' : ''}${target.type}s/${target.id}` : null,
      requestId: source === 'job' ? null : uuidv7At(at, random),
      targetType: target.type,
      targetId: target.id,
      changes,
      context: source === 'job' ? { job: `${target.type}-sync`, attempt: 1 + Math.floor(random() * 3) } : null,
      reason: verb === 'rejected' || verb === 'deleted' ? 'requested by the customer' : null,
      error: failed ? pick(ERRORS, random) : null,
      seq: null,
    };
    yield { row, subjects };
  }
}

export interface SeedResult {
  events: number;
  subjects: number;
  seconds: number;
  /** `audit_log` and `audit_subject` rows written per second (tables analysed afterwards, not counted). */
  rowsPerSec: number;
}

/** Rows per COPY chunk (PostgreSQL) and per multi-row INSERT (MariaDB: about 0.8 MB, well under `max_allowed_packet`). */
const COPY_CHUNK = 50_000;
const INSERT_ROWS = 1_000;

/**
 * Fills `audit_log` and `audit_subject` (created by `AuditMigrations` on `dataSource`)
 * with `n` seeded events: COPY on PostgreSQL (`place` is the schema), multi-row INSERTs
 * on MariaDB (`place` is the database). Then analyses both tables.
 */
export async function seedReadTables(dataSource: DataSource, kind: ReadDatabase, place: string, n: number, population = readPopulation()): Promise<SeedResult> {
  const logColumns = dataSource.getMetadata(AuditLogEntity).columns;
  const subjectColumns = dataSource.getMetadata(AuditSubjectEntity).columns;
  const events = seedEvents(population, n);
  let subjects = 0;
  const started = performance.now();
  if (kind === 'postgres') {
    const log = `"${place}"."${dataSource.getMetadata(AuditLogEntity).tableName}"`;
    const subject = `"${place}"."${dataSource.getMetadata(AuditSubjectEntity).tableName}"`;
    const names = (columns: typeof logColumns): string => columns.map((column) => `"${column.databaseName}"`).join(', ');
    const line = (columns: typeof logColumns, value: object): string =>
      columns.map((column) => copyField((value as Record<string, unknown>)[column.propertyName])).join('\t') + '\n';
    await withClient(async (client) => {
      for (let done = 0; done < n; done += COPY_CHUNK) {
        const rows: string[] = [];
        const subjectRows: string[] = [];
        for (let i = 0; i < Math.min(COPY_CHUNK, n - done); i++) {
          const event = events.next().value as SeedEvent;
          rows.push(line(logColumns, event.row));
          for (const s of event.subjects) subjectRows.push(line(subjectColumns, s));
        }
        subjects += subjectRows.length;
        await pipeline(Readable.from(rows), client.query(copyFrom(`COPY ${log} (${names(logColumns)}) FROM STDIN`)));
        await pipeline(Readable.from(subjectRows), client.query(copyFrom(`COPY ${subject} (${names(subjectColumns)}) FROM STDIN`)));
      }
    });
  } else {
    const log = `\`${dataSource.getMetadata(AuditLogEntity).tableName}\``;
    const subject = `\`${dataSource.getMetadata(AuditSubjectEntity).tableName}\``;
    const names = (columns: typeof logColumns): string => columns.map((column) => `\`${column.databaseName}\``).join(', ');
    const value = (raw: unknown): unknown =>
      raw instanceof Date ? raw.toISOString().replace('T', ' ').replace('Z', '') : raw !== null && typeof raw === 'object' ? JSON.stringify(raw) : raw;
    const tuple = (columns: typeof logColumns, row: object): unknown[] => columns.map((column) => value((row as Record<string, unknown>)[column.propertyName]));
    await withMariadb(place, async (connection) => {
      let pending: Promise<unknown> = Promise.resolve();
      const subjectBuffer: unknown[][] = [];
      for (let done = 0; done < n; done += INSERT_ROWS) {
        const rows: unknown[][] = [];
        for (let i = 0; i < Math.min(INSERT_ROWS, n - done); i++) {
          const event = events.next().value as SeedEvent;
          rows.push(tuple(logColumns, event.row));
          for (const s of event.subjects) subjectBuffer.push(tuple(subjectColumns, s));
        }
        await pending;
        const subjectRows = subjectBuffer.length >= INSERT_ROWS || done + INSERT_ROWS >= n ? subjectBuffer.splice(0) : [];
        subjects += subjectRows.length;
        pending = (async () => {
          await connection.query(`INSERT INTO ${log} (${names(logColumns)}) VALUES ?`, [rows]);
          if (subjectRows.length) await connection.query(`INSERT INTO ${subject} (${names(subjectColumns)}) VALUES ?`, [subjectRows]);
        })();
      }
      await pending;
    });
  }
  const seconds = (performance.now() - started) / 1000;
  if (kind === 'postgres') await withClient((client) => client.query(`ANALYZE "${place}"."audit_log", "${place}"."audit_subject"`));
  else await withMariadb(place, (connection) => connection.query('ANALYZE TABLE `audit_log`, `audit_subject`'));
  return { events: n, subjects, seconds, rowsPerSec: (n + subjects) / seconds };
}
