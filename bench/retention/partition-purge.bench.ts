import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AuditService, listAuditPartitions, partitionAuditLog } from 'nestjs-system-audit';
import { CapturingLogger, ReadBenchModule } from '../read/read-bench.module.js';
import { readPopulation, seedReadTables } from '../read/seed.js';
import { createBenchSchema } from '../support/postgres.js';
import { fixed, int, ratio, table, times } from '../support/stats.js';

export interface PartitionPurgeOptions {
  /** Events seeded over twelve months, in each of the two layouts. */
  events: number;
}

interface LayoutRun {
  layout: 'rows' | 'partitions';
  seedSeconds: number;
  /** `partitionAuditLog()` over the seeded table (the migration), partitions only. */
  migrateSeconds?: number;
  /** Month partitions before and after the purge, partitions only. */
  partitionsBefore?: number;
  partitionsAfter?: number;
  purgeSeconds: number;
  deleted: number;
}

export interface PartitionPurgeResult {
  options: PartitionPurgeOptions;
  before: Date;
  runs: LayoutRun[];
  problems: string[];
}

const DAY = 86_400_000;

/**
 * On PostgreSQL, the same `events` (twelve months of the read benchmark's population) in
 * two schemas, one left as one table and one partitioned by month with
 * `partitionAuditLog()`; then `purge()` of the events before a month boundary near the
 * middle in each: row deletes in batches against dropped month partitions.
 */
export async function runPartitionPurge(options: PartitionPurgeOptions): Promise<PartitionPurgeResult> {
  const base = readPopulation();
  const population = { ...base, from: new Date(base.to.getTime() - 365 * DAY) };
  const before = new Date(Date.UTC(base.to.getUTCFullYear(), base.to.getUTCMonth() - 6, 1));
  const runs: LayoutRun[] = [];
  const problems: string[] = [];
  for (const layout of ['rows', 'partitions'] as const) {
    const schema = await createBenchSchema(`purge_${layout}`);
    const app = await NestFactory.createApplicationContext(ReadBenchModule.forRoot('postgres', schema.name, new CapturingLogger()), { logger: ['error', 'warn'] });
    await app.init();
    try {
      const dataSource = app.get<DataSource>(getDataSourceToken());
      const seed = await seedReadTables(dataSource, 'postgres', schema.name, options.events, population);
      const run: LayoutRun = { layout, seedSeconds: seed.seconds, purgeSeconds: 0, deleted: 0 };
      const runner = dataSource.createQueryRunner();
      try {
        if (layout === 'partitions') {
          const started = performance.now();
          await partitionAuditLog(runner);
          run.migrateSeconds = (performance.now() - started) / 1000;
          run.partitionsBefore = (await listAuditPartitions(runner))?.length;
        }
        await schema.query(`ANALYZE ${schema.table('audit_log')}`);
        const started = performance.now();
        run.deleted = (await app.get(AuditService).purge({ before })).deleted;
        run.purgeSeconds = (performance.now() - started) / 1000;
        if (layout === 'partitions') run.partitionsAfter = (await listAuditPartitions(runner))?.length;
      } finally {
        await runner.release();
      }
      runs.push(run);
    } finally {
      await app.close();
      await schema.drop();
    }
  }
  const [rows, partitions] = runs as [LayoutRun, LayoutRun];
  if (rows.deleted !== partitions.deleted) problems.push(`the two purges removed ${int(rows.deleted)} and ${int(partitions.deleted)} events`);
  if (rows.deleted === 0) problems.push('nothing was purged');
  if (partitions.partitionsAfter !== undefined && partitions.partitionsBefore !== undefined && partitions.partitionsAfter >= partitions.partitionsBefore) {
    problems.push('no month partition was dropped');
  }
  return { options, before, runs, problems };
}

export function formatPartitionPurge(result: PartitionPurgeResult): string[] {
  const [rows, partitions] = result.runs as [LayoutRun, LayoutRun];
  return [
    `Retention on PostgreSQL: ${int(result.options.events)} events over twelve months, purge() of those before ${result.before.toISOString().slice(0, 10)}, without integrity`,
    ...table(
      ['audit_log', 'purge s', 'events/s', 'deleted', 'vs rows'],
      result.runs.map((run) => [
        run.layout === 'rows' ? 'one table (batches of 5,000 deletes)' : `monthly partitions (${run.partitionsBefore} → ${run.partitionsAfter})`,
        fixed(run.purgeSeconds, 2),
        int(run.deleted / run.purgeSeconds),
        int(run.deleted),
        run.layout === 'rows' ? '' : times(ratio(rows.purgeSeconds, run.purgeSeconds)),
      ]),
    ),
    `  partitionAuditLog() over the seeded table (the migration, rows copied): ${fixed(partitions.migrateSeconds ?? Number.NaN, 1)} s; seeding ${fixed(rows.seedSeconds, 1)} s per layout`,
    ...result.problems.map((problem) => `  PROBLEM: ${problem}`),
  ];
}
