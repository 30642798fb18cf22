import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import { LessThan, type DataSource, type FindOptionsWhere } from 'typeorm';
import { AuditLogEntity, AuditService, type AuditExportFormat, type AuditExportQuery, type AuditPage, type AuditQuery } from 'nestjs-system-audit';
import { createBenchDatabase, mariadbVersion } from '../support/mariadb.js';
import { createBenchSchema, postgresVersion } from '../support/postgres.js';
import { fixed, int, percentile, sampleMemory, table, type MemoryPeaks } from '../support/stats.js';
import { CapturingLogger, ReadBenchModule, type CapturedQuery } from './read-bench.module.js';
import { drawActor, drawTarget, prng, readPopulation, seedReadTables, type ReadDatabase, type ReadPopulation, type SeedResult } from './seed.js';

export interface ReadOptions {
  /** Events seeded (`BENCH_READ_EVENTS`). */
  events: number;
  /** Timed runs of each query, each with parameters drawn afresh. */
  runs: number;
  /** Page size of `find()`. */
  limit: number;
  /** The deep page timed (through every cursor before it), on the first `deepRuns` runs that have one. */
  deepPage: number;
  deepRuns: number;
  /** `BENCH_READ_DATABASES=postgres` runs one only. */
  databases: ReadDatabase[];
}

/** One query's timings: the first page and the page after it (through `nextCursor`, when there was one). */
export interface QueryTiming {
  name: string;
  first: number[];
  later: number[];
  /** Page `deepPage`, reached through the cursors of the pages before it. */
  deep: number[];
  rowsFirst: number;
  explains: Explained[];
}

/** A statement the bench ran and the database's plan for it. */
export interface Explained {
  page: string;
  sql: string;
  plan: string[];
  fullScan: boolean;
  sort: boolean;
}

/** One operation over the seeded table (see {@link bulkSpecs}): its rate and the process's memory meanwhile. */
export interface BulkTiming {
  name: string;
  /** Rows it went through, and how many it should have (counted with SQL). */
  rows: number;
  expectedRows: number;
  /** Bytes it wrote (an export's size). */
  bytes: number;
  seconds: number;
  rowsPerSec: number;
  /** The process's RSS after a full GC before it, its peak sampled every 50 ms, and the heap's peak. */
  rssBeforeMb: number;
  rssPeakMb: number;
  heapPeakMb: number;
  explains: Explained[];
}

export interface ReadRun {
  database: ReadDatabase;
  version: string;
  seed: SeedResult;
  queries: QueryTiming[];
  bulk: BulkTiming[];
}

export interface ReadResult {
  options: ReadOptions;
  runs: ReadRun[];
}

const DAY = 86_400_000;

/** A query of the bench: its first page from drawn parameters, and the next one if any. */
interface QuerySpec {
  name: string;
  first(audit: AuditService, random: () => number): Promise<{ page: AuditPage; query?: AuditQuery }>;
}

function querySpecs(population: ReadPopulation, limit: number): QuerySpec[] {
  const span = population.to.getTime() - population.from.getTime();
  const find = async (audit: AuditService, query: AuditQuery) => ({ page: await audit.find({ ...query, limit }), query });
  return [
    {
      name: 'find by actor',
      first: (audit, random) => {
        const actor = drawActor(population, random);
        return find(audit, { actorType: actor.type, actorId: actor.id });
      },
    },
    { name: 'find by target', first: (audit, random) => find(audit, { target: drawTarget(population, random) }) },
    {
      name: 'find by action + 7 days',
      first: (audit, random) => {
        const from = new Date(population.from.getTime() + Math.floor(random() * (span - 7 * DAY)));
        return find(audit, { action: population.actions[Math.floor(random() * population.actions.length)]!, from, to: new Date(from.getTime() + 7 * DAY) });
      },
    },
    {
      name: 'find by source + outcome',
      first: (audit, random) =>
        find(audit, { source: population.sources[Math.floor(random() * population.sources.length)]!, outcome: random() < 0.5 ? 'failure' : 'success' }),
    },
    {
      name: 'history(target)',
      first: async (audit, random) => {
        const items = await audit.history(drawTarget(population, random));
        return { page: { items, nextCursor: null } };
      },
    },
  ];
}

/** An operation over the whole seeded table, timed with the process's memory sampled. */
interface BulkSpec {
  name: string;
  /** The rows it should go through. */
  expectedRows(dataSource: DataSource): Promise<number>;
  /** Runs it: the rows it went through and the bytes it wrote. */
  run(audit: AuditService): Promise<{ rows: number; bytes: number }>;
}

/**
 * `export()` piped to a sink that counts bytes and lines: the trail's rows, read a page at
 * a time with back-pressure, must never be held in memory together.
 */
async function exportToSink(audit: AuditService, query: AuditExportQuery, format: AuditExportFormat): Promise<{ rows: number; bytes: number }> {
  let bytes = 0;
  let lines = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
      done();
    },
  });
  await pipeline(audit.export(query, { format }), sink);
  // CSV: a header record first (the seeded values hold no line breaks, so a line is a record).
  return { rows: format === 'csv' ? lines - 1 : lines, bytes };
}

/** The filtered export: one source and outcome (about a sixth of the seeded events). */
const FILTERED_EXPORT = { source: 'admin', outcome: 'success' } satisfies AuditExportQuery & FindOptionsWhere<AuditLogEntity>;

/**
 * The operations timed on the seeded table after the queries, in this order: the exports
 * (the whole trail as JSON Lines and as CSV, and a filtered one). An operation that
 * deletes rows (a retention purge) belongs at the end of this list, after those that read.
 */
function bulkSpecs(population: ReadPopulation): BulkSpec[] {
  const count = (query: FindOptionsWhere<AuditLogEntity>) => (dataSource: DataSource) => dataSource.getRepository(AuditLogEntity).countBy(query);
  // The oldest half of the seeded time span; last, since it removes what the others read.
  const middle = new Date((population.from.getTime() + population.to.getTime()) / 2);
  return [
    { name: 'export() jsonl, whole trail', expectedRows: count({}), run: (audit) => exportToSink(audit, {}, 'jsonl') },
    { name: 'export() csv, whole trail', expectedRows: count({}), run: (audit) => exportToSink(audit, {}, 'csv') },
    {
      name: `export() jsonl, ${Object.entries(FILTERED_EXPORT).map(([key, value]) => `${key} ${String(value)}`).join(' + ')}`,
      expectedRows: count(FILTERED_EXPORT),
      run: (audit) => exportToSink(audit, FILTERED_EXPORT, 'jsonl'),
    },
    {
      name: `purge(), events before ${middle.toISOString().slice(0, 10)} (the older half), batches of 5,000`,
      expectedRows: count({ occurredAt: LessThan(middle) }),
      run: async (audit) => ({ rows: (await audit.purge({ before: middle })).deleted, bytes: 0 }),
    },
  ];
}

/** Runs `spec` with the process's RSS and heap sampled every 50 ms; its first two statements on `audit_log` explained. */
async function runBulk(spec: BulkSpec, audit: AuditService, dataSource: DataSource, database: ReadDatabase, logger: CapturingLogger): Promise<BulkTiming> {
  const expectedRows = await spec.expectedRows(dataSource);
  const memory = sampleMemory();
  let peaks: MemoryPeaks;
  logger.queries.length = 0;
  logger.captureLimit = 10;
  logger.capturing = true;
  const started = performance.now();
  let result: { rows: number; bytes: number };
  try {
    result = await spec.run(audit);
  } finally {
    peaks = memory.stop();
    logger.capturing = false;
    logger.captureLimit = Number.POSITIVE_INFINITY;
  }
  const seconds = (performance.now() - started) / 1000;
  const explains: Explained[] = [];
  for (const [i, statement] of selects(logger.queries).slice(0, 2).entries()) {
    explains.push({ page: i === 0 ? 'first page' : 'next page', sql: statement.sql, ...(await explain(dataSource, database, statement)) });
  }
  logger.queries.length = 0;
  return {
    name: spec.name,
    rows: result.rows,
    expectedRows,
    bytes: result.bytes,
    seconds,
    rowsPerSec: result.rows / seconds,
    ...peaks,
    explains,
  };
}

/** The statements on `audit_log` among those captured (the page's SELECT). */
const selects = (queries: CapturedQuery[]): CapturedQuery[] => queries.filter((query) => /^\s*SELECT/i.test(query.sql) && /audit_log/.test(query.sql));

async function explain(dataSource: DataSource, database: ReadDatabase, query: CapturedQuery): Promise<{ plan: string[]; fullScan: boolean; sort: boolean }> {
  if (database === 'postgres') {
    const rows: Array<{ 'QUERY PLAN': string }> = await dataSource.query(`EXPLAIN (FORMAT TEXT) ${query.sql}`, query.parameters);
    const plan = rows.map((row) => row['QUERY PLAN']);
    return { plan, fullScan: plan.some((line) => /Seq Scan on audit_log\b/.test(line)), sort: plan.some((line) => /\bSort\b/.test(line)) };
  }
  const rows: Array<Record<string, unknown>> = await dataSource.query(`EXPLAIN ${query.sql}`, query.parameters);
  const columns = ['id', 'select_type', 'table', 'type', 'possible_keys', 'key', 'key_len', 'ref', 'rows', 'Extra'];
  const plan = table(columns, rows.map((row) => columns.map((column) => (row[column] === null || row[column] === undefined ? 'NULL' : String(row[column])))), '');
  const fullScan = rows.some((row) => (row['table'] === 'e' || row['table'] === 'audit_log') && row['type'] === 'ALL');
  const sort = rows.some((row) => /filesort/i.test(String(row['Extra'] ?? '')));
  return { plan, fullScan, sort };
}

/**
 * On PostgreSQL and MariaDB: `events` seeded audit events (see seed.ts) in a database of
 * their own, then `find()` by actor, by target, by action and time range, by source and
 * outcome, and `history()`, `runs` times each with parameters drawn from the seeded
 * population: the first page and the next one through `nextCursor`. One run of each is
 * captured (the SQL TypeORM sends) and explained. Then the operations of
 * {@link bulkSpecs} over the whole table (the exports), with the process's memory.
 */
export async function runRead(options: ReadOptions): Promise<ReadResult> {
  const runs: ReadRun[] = [];
  const population = readPopulation();
  for (const database of options.databases) {
    const place = database === 'postgres' ? await createBenchSchema('read') : await createBenchDatabase('read');
    const logger = new CapturingLogger();
    const app = await NestFactory.createApplicationContext(ReadBenchModule.forRoot(database, place.name, logger), { logger: ['error', 'warn'] });
    await app.init();
    try {
      const dataSource = app.get<DataSource>(getDataSourceToken());
      const version = database === 'postgres' ? await postgresVersion() : await mariadbVersion();
      const seed = await seedReadTables(dataSource, database, place.name, options.events, population);
      const audit = app.get(AuditService);
      const queries: QueryTiming[] = [];
      for (const spec of querySpecs(population, options.limit)) {
        const random = prng(7);
        const timing: QueryTiming = { name: spec.name, first: [], later: [], deep: [], rowsFirst: 0, explains: [] };
        // Warm-up: a few runs untimed, the first captured.
        for (let run = -5; run < options.runs; run++) {
          const capture = run === -5;
          logger.capturing = capture;
          logger.queries.length = 0;
          let started = performance.now();
          const { page, query } = await spec.first(audit, random);
          const firstMs = performance.now() - started;
          const firstSql = capture ? selects(logger.queries).at(-1) : undefined;
          logger.queries.length = 0;
          let laterSql: CapturedQuery | undefined;
          let laterMs: number | undefined;
          if (page.nextCursor && query) {
            started = performance.now();
            const later = await audit.find({ ...query, limit: options.limit, cursor: page.nextCursor });
            laterMs = performance.now() - started;
            laterSql = capture ? selects(logger.queries).at(-1) : undefined;
            logger.capturing = false;
            // The deep page: through the cursors of the pages before it, the last one timed.
            let cursor = later.nextCursor;
            for (let depth = 3; run >= 0 && timing.deep.length < options.deepRuns && cursor && depth <= options.deepPage; depth++) {
              started = performance.now();
              cursor = (await audit.find({ ...query, limit: options.limit, cursor })).nextCursor;
              if (depth === options.deepPage) timing.deep.push(performance.now() - started);
            }
          }
          logger.capturing = false;
          if (firstSql) timing.explains.push({ page: 'first page', sql: firstSql.sql, ...(await explain(dataSource, database, firstSql)) });
          if (laterSql) timing.explains.push({ page: 'next page', sql: laterSql.sql, ...(await explain(dataSource, database, laterSql)) });
          if (run < 0) continue;
          timing.first.push(firstMs);
          timing.rowsFirst += page.items.length;
          if (laterMs !== undefined) timing.later.push(laterMs);
        }
        queries.push(timing);
      }
      const bulk: BulkTiming[] = [];
      for (const spec of bulkSpecs(population)) bulk.push(await runBulk(spec, audit, dataSource, database, logger));
      runs.push({ database, version, seed, queries, bulk });
    } finally {
      await app.close();
      await place.drop();
    }
  }
  return { options, runs };
}

/** The statement without its long select list (every column of the row) and schema names. */
const shortSql = (sql: string): string =>
  sql
    .replace(/^SELECT .*? FROM /, 'SELECT e.<every column> FROM ')
    .replace(/["`]bench_read_[0-9a-f]+["`]\./g, '');

export function formatRead(result: ReadResult): string[] {
  const { options } = result;
  const lines = [
    `Read side: ${int(options.events)} seeded events (5,000 actors, 100,000 targets, 40 actions, 90 days); ${options.runs} runs per query with random parameters, pages of ${options.limit}; ` +
      `page ${options.deepPage} timed on the first ${options.deepRuns} runs that reach it; "sort": the plan sorts (PostgreSQL Sort / Incremental Sort, MariaDB filesort)`,
  ];
  for (const run of result.runs) {
    const ms = (values: number[], p: number): string => (values.length ? fixed(percentile([...values].sort((a, b) => a - b), p), 2) : '-');
    lines.push(
      '',
      `${run.version}: seeded ${int(run.seed.events)} audit_log + ${int(run.seed.subjects)} audit_subject rows in ${fixed(run.seed.seconds, 1)} s (${int(run.seed.rowsPerSec)} rows/s)`,
      ...table(
        ['query', 'p50 ms', 'p95 ms', 'rows/page', 'next p50', 'next p95', 'next pages', `page ${options.deepPage} p50`, `page ${options.deepPage} p95`, 'deep runs', 'full scan', 'sort'],
        run.queries.map((query) => [
          query.name,
          ms(query.first, 50),
          ms(query.first, 95),
          fixed(query.rowsFirst / Math.max(1, query.first.length), 1),
          ms(query.later, 50),
          ms(query.later, 95),
          `${query.later.length}/${query.first.length}`,
          ms(query.deep, 50),
          ms(query.deep, 95),
          String(query.deep.length),
          query.explains.some((e) => e.fullScan) ? 'FULL SCAN' : 'no',
          query.explains.some((e) => e.sort) ? 'yes' : 'no',
        ]),
      ),
    );
    lines.push(
      '',
      `  The whole table, in this process (RSS after a full GC before each, peak sampled every 50 ms):`,
      ...table(
        ['operation', 'rows', 'expected', 'MB written', 'seconds', 'rows/s', 'RSS before MB', 'RSS peak MB', 'RSS +MB', 'heap peak MB'],
        run.bulk.map((bulk) => [
          bulk.name,
          int(bulk.rows),
          bulk.rows === bulk.expectedRows ? 'same' : `${int(bulk.expectedRows)} !!`,
          fixed(bulk.bytes / 1024 / 1024, 1),
          fixed(bulk.seconds, 1),
          int(bulk.rowsPerSec),
          int(bulk.rssBeforeMb),
          int(bulk.rssPeakMb),
          int(bulk.rssPeakMb - bulk.rssBeforeMb),
          int(bulk.heapPeakMb),
        ]),
        '  ',
      ),
    );
    const explained = [...run.queries, ...run.bulk];
    for (const item of explained) {
      for (const e of item.explains) {
        lines.push(
          '',
          `  EXPLAIN ${run.database} — ${item.name}, ${e.page}${e.fullScan ? '  *** FULL SCAN OF audit_log ***' : ''}`,
          `    ${shortSql(e.sql)}`,
          ...e.plan.map((line) => `    ${line}`),
        );
      }
    }
  }
  lines.push('', '  history() has no cursor (one call, up to 1,000 events oldest first): no next page.');
  return lines;
}
