import 'reflect-metadata';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import { from as copyFrom } from 'pg-copy-streams';
import type { DataSource } from 'typeorm';
import { AuditLogEntity, AuditService } from 'nestjs-system-audit';
import { createBenchSchema, withClient, type BenchSchema } from '../support/postgres.js';
import { fixed, int, ratio, runConcurrently, table, times, verdict } from '../support/stats.js';
import { auditInput, auditRow } from './audit-rows.js';
import { WriterBenchModule } from './writer-bench.module.js';

export interface WriterOptions {
  /** Events per writer. */
  events: number;
  /** Events per writer before the measured runs (then the table is emptied). */
  warmupEvents: number;
  /** `AuditService.log()` calls pending at once. */
  moduleInFlight: number;
  /** Naive `save()` calls pending at once. */
  naiveInFlight: number;
  /** Connections in the TypeORM pool (shared by the module and the naive writer). */
  poolSize: number;
}

export interface WriterRun {
  events: number;
  seconds: number;
  eventsPerSec: number;
  /** Rows counted in `audit_log` afterwards. */
  rows: number;
}

export interface WriterResult {
  options: WriterOptions;
  module: WriterRun;
  naive: WriterRun;
  copy: WriterRun;
  /** Average on-disk size of one row (`pg_column_size`), in bytes. */
  rowBytes: number;
  moduleVsCopy: number;
  moduleVsNaive: number;
  /** Empty when every writer stored exactly its events, else what went wrong. */
  problems: string[];
}

/** The targets: at least 0.8× COPY and at least 20× the naive writer. */
export const WRITER_TARGETS = { minVsCopy: 0.8, minVsNaive: 20 };

/**
 * The same audit-sized rows into the same `audit_log` table three ways: the module's
 * `AuditService.log()` outside any unit of work (each call stores at once), a naive
 * `repository.save()` per event, and PostgreSQL `COPY … FROM STDIN` over one connection
 * (the physical limit). The table is emptied before each measured run.
 */
export async function runWriterThroughput(options: WriterOptions): Promise<WriterResult> {
  const schema = await createBenchSchema('writer');
  const app = await NestFactory.createApplicationContext(WriterBenchModule.forRoot(schema.name, options.poolSize), {
    logger: ['error', 'warn'],
  });
  try {
    const audit = app.get(AuditService);
    const dataSource = app.get<DataSource>(getDataSourceToken());
    const table = schema.table('audit_log');
    // audit_log is append-only after AuditMigrations: the bench empties it as an administrator would.
    const truncate = `BEGIN; SET LOCAL session_replication_role = replica; TRUNCATE ${table}; COMMIT`;
    const problems: string[] = [];

    const writers = {
      module: (n: number) => runConcurrently(n, options.moduleInFlight, (i) => audit.log(auditInput(i))),
      naive: (n: number) => {
        const repository = dataSource.getRepository(AuditLogEntity);
        return runConcurrently(n, options.naiveInFlight, (i) => repository.save(repository.create(auditRow(i))));
      },
      copy: (n: number) => copyRows(dataSource, schema, n),
    };

    for (const write of Object.values(writers)) await write(options.warmupEvents);
    await schema.query(truncate);

    const measure = async (name: keyof typeof writers): Promise<WriterRun> => {
      await schema.query('CHECKPOINT');
      const started = performance.now();
      await writers[name](options.events);
      const seconds = (performance.now() - started) / 1000;
      const rows = Number((await schema.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]!.n);
      if (rows !== options.events) problems.push(`${name}: ${int(rows)} rows stored for ${int(options.events)} events`);
      return { events: options.events, seconds, eventsPerSec: options.events / seconds, rows };
    };

    const module = await measure('module');
    const rowBytes = Number((await schema.query<{ b: string }>(`SELECT avg(pg_column_size(t.*)) AS b FROM ${table} t`))[0]!.b);
    problems.push(...(await sameShape(schema)));
    await schema.query(truncate);
    const naive = await measure('naive');
    await schema.query(truncate);
    const copy = await measure('copy');

    return {
      options,
      module,
      naive,
      copy,
      rowBytes,
      moduleVsCopy: ratio(module.eventsPerSec, copy.eventsPerSec),
      moduleVsNaive: ratio(module.eventsPerSec, naive.eventsPerSec),
      problems,
    };
  } finally {
    await app.close();
    await schema.drop();
  }
}

/** The row `log()` stored for event 0 must equal the row the other writers store for it (ids and times aside). */
async function sameShape(schema: BenchSchema): Promise<string[]> {
  const [stored] = await schema.query<Record<string, unknown>>(
    `SELECT action, outcome, kind, actor_type, actor_id, actor_display, source, target_type, target_id,
            changes::text AS changes, context::text AS context, reason, error::text AS error
       FROM ${schema.table('audit_log')} WHERE target_id = '1'`,
  );
  const row = auditRow(0);
  const expected: Record<string, unknown> = {
    action: row.action,
    outcome: row.outcome,
    kind: row.kind,
    actor_type: row.actorType,
    actor_id: row.actorId,
    actor_display: row.actorDisplay,
    source: row.source,
    target_type: row.targetType,
    target_id: row.targetId,
    changes: JSON.stringify(row.changes),
    context: JSON.stringify(row.context),
    reason: row.reason,
    error: null,
  };
  return JSON.stringify(stored) === JSON.stringify(expected)
    ? []
    : [`the row log() stored differs from the naive/COPY row: ${JSON.stringify(stored)} vs ${JSON.stringify(expected)}`];
}

/** COPY's text format: tab-separated, `\N` for NULL, backslash escapes. */
export function copyField(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  const text = value instanceof Date ? value.toISOString() : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/** Streams `n` rows into the table with one `COPY … FROM STDIN`, building them on the fly. */
export async function copyRows(dataSource: DataSource, schema: BenchSchema, n: number): Promise<void> {
  const columns = dataSource.getMetadata(AuditLogEntity).columns;
  const names = columns.map((column) => `"${column.databaseName}"`).join(', ');
  function* lines(): Generator<string> {
    let chunk = '';
    for (let i = 0; i < n; i++) {
      const row = auditRow(i) as unknown as Record<string, unknown>;
      chunk += columns.map((column) => copyField(row[column.propertyName])).join('\t') + '\n';
      if (chunk.length > 64 * 1024) {
        yield chunk;
        chunk = '';
      }
    }
    if (chunk) yield chunk;
  }
  await withClient((client) =>
    pipeline(Readable.from(lines()), client.query(copyFrom(`COPY ${schema.table('audit_log')} (${names}) FROM STDIN`))),
  );
}

export function formatWriterThroughput(result: WriterResult): string[] {
  const { options } = result;
  const row = (label: string, run: WriterRun): string[] => [label, int(run.eventsPerSec), fixed(run.seconds, 2), int(run.rows)];
  const lines = [
    `Writer throughput: ${int(options.events)} audit rows (~${int(result.rowBytes)} bytes each) into audit_log on PostgreSQL; TypeORM pool of ${options.poolSize}; ${int(options.warmupEvents)} warm-up events per writer`,
    ...table(
      ['writer', 'events/s', 'seconds', 'rows'],
      [
        row(`AuditService.log(), ${options.moduleInFlight} in flight, no unit of work`, result.module),
        row(`naive repository.save() per event, ${options.naiveInFlight} in flight`, result.naive),
        row('COPY FROM STDIN (pg-copy-streams), one connection', result.copy),
      ],
    ),
    `  module / COPY:  ${times(result.moduleVsCopy)} (target ≥ ${WRITER_TARGETS.minVsCopy}×: ${verdict(result.moduleVsCopy >= WRITER_TARGETS.minVsCopy)})`,
    `  module / naive: ${times(result.moduleVsNaive)} (target ≥ ${WRITER_TARGETS.minVsNaive}×: ${verdict(result.moduleVsNaive >= WRITER_TARGETS.minVsNaive)})`,
  ];
  for (const problem of result.problems) lines.push(`  !! ${problem}`);
  return lines;
}
