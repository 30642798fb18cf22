import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AuditService } from 'nestjs-system-audit';
import { createBenchSchema } from '../support/postgres.js';
import { fixed, int, times } from '../support/stats.js';
import { copyRows } from '../writer/writer-throughput.bench.js';
import { IntegrityBenchModule } from './integrity-bench.module.js';

export interface IntegrityOptions {
  /** Events stored (with COPY) and then sequenced by the integrator, then verified. */
  events: number;
}

export interface IntegrityResult {
  options: IntegrityOptions;
  copySeconds: number;
  /** `checkpoint()` over every stored event: the integrator's batches (seq, leaves, tree nodes) and one signed checkpoint. */
  integrator: { seconds: number; eventsPerSec: number };
  verify: { seconds: number; eventsPerSec: number; ok: boolean; problems: number; rssBeforeMb: number; rssPeakMb: number; heapPeakMb: number };
  problems: string[];
}

/**
 * On PostgreSQL: `events` audit rows stored with COPY, then sequenced by the integrator
 * (`checkpoint()`: seq, leaf and tree nodes for each, a signed checkpoint), then checked
 * end to end by `verify()` (every row re-hashed against its leaf, every checkpoint's root
 * recomputed), with the process's memory sampled meanwhile.
 */
export async function runIntegrity(options: IntegrityOptions): Promise<IntegrityResult> {
  const schema = await createBenchSchema('integrity');
  const { privateKey } = generateKeyPairSync('ed25519');
  const app = await NestFactory.createApplicationContext(IntegrityBenchModule.forRoot(schema.name, privateKey), { logger: ['error', 'warn'] });
  await app.init();
  try {
    const audit = app.get(AuditService);
    const dataSource = app.get<DataSource>(getDataSourceToken());
    const problems: string[] = [];

    let started = performance.now();
    await copyRows(dataSource, schema, options.events);
    const copySeconds = (performance.now() - started) / 1000;

    started = performance.now();
    const checkpoint = await audit.checkpoint();
    const integratorSeconds = (performance.now() - started) / 1000;
    if (checkpoint.treeSize !== options.events) problems.push(`the checkpoint covers ${int(checkpoint.treeSize)} events, not ${int(options.events)}`);

    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    let heapPeak = process.memoryUsage().heapUsed;
    const sampler = setInterval(() => {
      const usage = process.memoryUsage();
      rssPeak = Math.max(rssPeak, usage.rss);
      heapPeak = Math.max(heapPeak, usage.heapUsed);
    }, 50);
    started = performance.now();
    const verified = await audit.verify();
    const verifySeconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    if (!verified.ok) problems.push(`verify() found ${verified.problems.length} problems, e.g. ${JSON.stringify(verified.problems[0])}`);
    if (verified.treeSize !== options.events) problems.push(`verify() checked a tree of ${int(verified.treeSize)} events, not ${int(options.events)}`);

    const mb = (bytes: number): number => bytes / 1024 / 1024;
    return {
      options,
      copySeconds,
      integrator: { seconds: integratorSeconds, eventsPerSec: options.events / integratorSeconds },
      verify: {
        seconds: verifySeconds,
        eventsPerSec: options.events / verifySeconds,
        ok: verified.ok,
        problems: verified.problems.length,
        rssBeforeMb: mb(rssBefore),
        rssPeakMb: mb(rssPeak),
        heapPeakMb: mb(heapPeak),
      },
      problems,
    };
  } finally {
    await app.close();
    await schema.drop();
  }
}

/** `writerEventsPerSec`: the module writer's rate measured in the same run, when it ran. */
export function formatIntegrity(result: IntegrityResult, writerEventsPerSec?: number): string[] {
  const { integrator, verify } = result;
  const lines = [
    `Integrity on PostgreSQL: ${int(result.options.events)} events stored with COPY (${fixed(result.copySeconds, 1)} s), then sequenced and verified`,
    `  integrator (checkpoint(): seq, leaf and tree nodes per event, one signed checkpoint): ${int(integrator.eventsPerSec)} events/s (${fixed(integrator.seconds, 1)} s)`,
  ];
  if (writerEventsPerSec !== undefined) {
    const ratio = integrator.eventsPerSec / writerEventsPerSec;
    lines.push(`  integrator / module writer's peak (${int(writerEventsPerSec)} events/s, this run): ${times(ratio)} — ${ratio >= 1 ? 'keeps up' : 'FALLS BEHIND under a sustained peak'}`);
  }
  lines.push(
    `  verify(): ${fixed(verify.seconds, 1)} s, ${int(verify.eventsPerSec)} events/s, ${verify.ok ? 'ok' : `${verify.problems} problems`}; ` +
      `RSS ${int(verify.rssBeforeMb)} MB before, peak ${int(verify.rssPeakMb)} MB (+${int(verify.rssPeakMb - verify.rssBeforeMb)} MB); heap peak ${int(verify.heapPeakMb)} MB`,
  );
  for (const problem of result.problems) lines.push(`  !! ${problem}`);
  return lines;
}
