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
  /** Events per measured run (the naive writer stores half of it, and runs with 1 and 16 in flight a tenth and a quarter). */
  events: number;
  /** Events per writer before the measured runs. */
  warmupEvents: number;
  /** `AuditService.log()` calls pending at once, one measured run each: the scaling curve. */
  moduleInFlight: number[];
  /** Naive `save()` calls pending at once. */
  naiveInFlight: number;
  /** Connections in the TypeORM pool (shared by the module and the naive writer). */
  poolSize: number;
}

export interface WriterRun {
  events: number;
  seconds: number;
  eventsPerSec: number;
  /** Rows the run added to `audit_log`. */
  rows: number;
  /** Events of the run the integrator (sequencing in the background) had not sequenced when the run ended. */
  backlog: number;
  /** How long `checkpoint()` then took to sequence that backlog, in seconds. */
  drainSeconds: number;
}

export interface ModuleRun extends WriterRun {
  inFlight: number;
}

export interface WriterResult {
  options: WriterOptions;
  /** One run per number of calls in flight, in the order of `options.moduleInFlight`. */
  modules: ModuleRun[];
  /** The fastest of `modules`: the writer's peak. */
  module: ModuleRun;
  naive: WriterRun;
  /** COPY before and after the other writers, and their mean (the baseline). */
  copyRuns: [WriterRun, WriterRun];
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
 * `AuditService.log()` outside any unit of work (each call stores at once), at each
 * number of calls in flight of the scaling curve; a naive `repository.save()` per event;
 * and PostgreSQL `COPY … FROM STDIN` over one connection (the physical limit), before
 * and after the others. Integrity is on: the integrator sequences, hashes and signs in
 * the background throughout, as in production; before each run, `checkpoint()` lets it
 * sequence what the earlier runs wrote. The table keeps its rows from run to run
 * (it is append-only): each run counts the rows it added.
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
    const problems: string[] = [];
    // Event indexes of each run start past the previous run's: ids and targets never repeat.
    let next = 0;
    const module = (inFlight: number) => (base: number, n: number) => runConcurrently(n, inFlight, (i) => audit.log(auditInput(base + i)));
    const naive = (base: number, n: number) => {
      const repository = dataSource.getRepository(AuditLogEntity);
      return runConcurrently(n, options.naiveInFlight, (i) => repository.save(repository.create(auditRow(base + i))));
    };
    const copy = (base: number, n: number) => copyRows(dataSource, schema, base, n);
    const count = async (): Promise<number> => Number((await schema.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]!.n);

    for (const write of [module(options.moduleInFlight[0]!), naive, copy]) {
      await write(next, options.warmupEvents);
      next += options.warmupEvents;
    }

    const measure = async (name: string, write: (base: number, n: number) => Promise<void>, events: number): Promise<WriterRun & { base: number }> => {
      // The integrator first sequences what earlier runs wrote: each run then competes only
      // with the sequencing of its own events, as a writer does in production.
      await audit.checkpoint();
      await schema.query('CHECKPOINT');
      const before = await count();
      const base = next;
      next += events;
      const started = performance.now();
      await write(base, events);
      const seconds = (performance.now() - started) / 1000;
      const rows = (await count()) - before;
      if (rows !== events) problems.push(`${name}: ${int(rows)} rows stored for ${int(events)} events`);
      // Whether the integrator kept up while the events were written: what it had left, and how long that took.
      const backlog = Number((await schema.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE seq IS NULL`))[0]!.n);
      const draining = performance.now();
      await audit.checkpoint();
      const drainSeconds = (performance.now() - draining) / 1000;
      return { events, seconds, eventsPerSec: events / seconds, rows, backlog, drainSeconds, base };
    };

    const copyBefore = await measure('COPY', copy, options.events);
    const modules: ModuleRun[] = [];
    for (const inFlight of options.moduleInFlight) {
      const events = inFlight === 1 ? Math.ceil(options.events / 10) : inFlight <= 16 ? Math.ceil(options.events / 4) : options.events;
      const { base, ...run } = await measure(`log(), ${inFlight} in flight`, module(inFlight), events);
      if (modules.length === 0) problems.push(...(await sameShape(schema, base)));
      modules.push({ ...run, inFlight });
    }
    const rowBytes = Number((await schema.query<{ b: string }>(`SELECT avg(pg_column_size(t.*)) AS b FROM ${table} t`))[0]!.b);
    // The naive writer is slow: half as many events measure its rate well enough.
    const { base: _naiveBase, ...naiveRun } = await measure('naive', naive, Math.ceil(options.events / 2));
    const { base: _copyBase, ...copyAfter } = await measure('COPY', copy, options.events);
    const { base: _firstBase, ...copyFirst } = copyBefore;
    const copySeconds = (copyFirst.seconds + copyAfter.seconds) / 2;
    const copyMean: WriterRun = {
      events: options.events,
      seconds: copySeconds,
      eventsPerSec: options.events / copySeconds,
      rows: copyFirst.rows + copyAfter.rows,
      backlog: copyFirst.backlog + copyAfter.backlog,
      drainSeconds: copyFirst.drainSeconds + copyAfter.drainSeconds,
    };
    const peak = modules.reduce((best, run) => (run.eventsPerSec > best.eventsPerSec ? run : best));
    return {
      options,
      modules,
      module: peak,
      naive: naiveRun,
      copyRuns: [copyFirst, copyAfter],
      copy: copyMean,
      rowBytes,
      moduleVsCopy: ratio(peak.eventsPerSec, copyMean.eventsPerSec),
      moduleVsNaive: ratio(peak.eventsPerSec, naiveRun.eventsPerSec),
      problems,
    };
  } finally {
    await app.close();
    await schema.drop();
  }
}

/** The row `log()` stored for event `index` must equal the row the other writers store for it (ids and times aside). */
async function sameShape(schema: BenchSchema, index: number): Promise<string[]> {
  const row = auditRow(index);
  const [stored] = await schema.query<Record<string, unknown>>(
    `SELECT action, outcome, kind, actor_type, actor_id, actor_display, source, target_type, target_id,
            changes::text AS changes, context::text AS context, reason, error::text AS error
       FROM ${schema.table('audit_log')} WHERE target_id = $1`,
    [row.targetId],
  );
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

/** Streams rows `base`…`base + n - 1` into the table with one `COPY … FROM STDIN`, building them on the fly. */
export async function copyRows(dataSource: DataSource, schema: BenchSchema, base: number, n: number): Promise<void> {
  const columns = dataSource.getMetadata(AuditLogEntity).columns;
  const names = columns.map((column) => `"${column.databaseName}"`).join(', ');
  function* lines(): Generator<string> {
    let chunk = '';
    for (let i = 0; i < n; i++) {
      const row = auditRow(base + i) as unknown as Record<string, unknown>;
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
  const row = (label: string, run: WriterRun, vsCopy?: number): string[] => [
    label,
    int(run.eventsPerSec),
    fixed(run.seconds, 2),
    int(run.rows),
    vsCopy === undefined ? '' : times(vsCopy),
    int(run.backlog),
    fixed(run.drainSeconds, 2),
  ];
  const lines = [
    `Writer throughput: audit rows (~${int(result.rowBytes)} bytes each) into audit_log on PostgreSQL, integrity on (the integrator sequencing and signing throughout); TypeORM pool of ${options.poolSize}; ${int(options.warmupEvents)} warm-up events per writer`,
    ...table(
      ['writer', 'events/s', 'seconds', 'rows', '/ COPY', 'unsequenced at end', 'then sequenced in s'],
      [
        row('COPY FROM STDIN (pg-copy-streams), one connection, before', result.copyRuns[0]),
        ...result.modules.map((run) => row(`AuditService.log(), ${int(run.inFlight)} in flight, no unit of work`, run, ratio(run.eventsPerSec, result.copy.eventsPerSec))),
        row(`naive repository.save() per event, ${options.naiveInFlight} in flight`, result.naive, ratio(result.naive.eventsPerSec, result.copy.eventsPerSec)),
        row('COPY FROM STDIN (pg-copy-streams), one connection, after', result.copyRuns[1]),
      ],
    ),
    `  COPY, mean of both runs: ${int(result.copy.eventsPerSec)} events/s; the writer's peak: ${int(result.module.eventsPerSec)} events/s with ${int(result.module.inFlight)} in flight`,
    `  module peak / COPY:  ${times(result.moduleVsCopy)} (target ≥ ${WRITER_TARGETS.minVsCopy}×: ${verdict(result.moduleVsCopy >= WRITER_TARGETS.minVsCopy)})`,
    `  module peak / naive: ${times(result.moduleVsNaive)} (target ≥ ${WRITER_TARGETS.minVsNaive}×: ${verdict(result.moduleVsNaive >= WRITER_TARGETS.minVsNaive)})`,
    // A run shorter than the integrator's pass interval says little about keeping up: the integrity scenario's sustained run does.
    `  unsequenced at end: events of the run without a seq when it ended (the integrator passes every second: see the integrity scenario's sustained run for whether it keeps up)`,
  ];
  for (const problem of result.problems) lines.push(`  !! ${problem}`);
  return lines;
}
