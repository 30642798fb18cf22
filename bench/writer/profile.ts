// The writer half of `npm run bench:profile`: a CPU profile (through the inspector, of
// this process) of `AuditService.log()` storing BENCH_PROFILE_EVENTS events (default
// 40,000) with BENCH_PROFILE_IN_FLIGHT calls in flight (default 4,096: the writer's peak)
// on PostgreSQL, integrity on (BENCH_PROFILE_INTEGRITY=0: off), written to
// bench/profiles/writer/. Prints the CPU time per event by component and the top
// functions. Needs `npm run build`.
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import { AuditService } from 'nestjs-system-audit';
import { componentTable, summarize, topFunctions, type CpuProfile } from '../support/cpu-profile.js';
import { createBenchSchema } from '../support/postgres.js';
import { runConcurrently } from '../support/stats.js';
import { auditInput } from './audit-rows.js';
import { WriterBenchModule } from './writer-bench.module.js';

const events = Number(process.env['BENCH_PROFILE_EVENTS'] ?? '') || 40_000;
const inFlight = Number(process.env['BENCH_PROFILE_IN_FLIGHT'] ?? '') || 4_096;
const dir = fileURLToPath(new URL('../profiles/writer', import.meta.url));
mkdirSync(dir, { recursive: true });

const schema = await createBenchSchema('profile_writer');
/** `BENCH_PROFILE_INTEGRITY=0`: without integrity (no integrator running beside the writer). */
const integrity = process.env['BENCH_PROFILE_INTEGRITY'] !== '0';
const app = await NestFactory.createApplicationContext(WriterBenchModule.forRoot(schema.name, 16, integrity), { logger: ['error', 'warn'] });
try {
  const audit = app.get(AuditService);
  await runConcurrently(2_000, inFlight, (i) => audit.log(auditInput(i)));
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  const started = performance.now();
  await runConcurrently(events, inFlight, (i) => audit.log(auditInput(2_000 + i)));
  const seconds = (performance.now() - started) / 1000;
  const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
  session.disconnect();
  writeFileSync(`${dir}/writer.cpuprofile`, JSON.stringify(profile));
  const summary = summarize(profile, events);
  console.log(`writer: ${inFlight.toLocaleString('en-US')} in flight, integrity ${integrity ? 'on' : 'off'}: ${events.toLocaleString('en-US')} events in ${seconds.toFixed(2)} s, ${Math.round(events / seconds).toLocaleString('en-US')} events/s (under the profiler)`);
  console.log(['', ...componentTable(['log()'], [summary], 'event'), '', 'top functions by self time, µs per event:', ...topFunctions(summary, 40)].join('\n'));
  console.log(`\nprofile: bench/profiles/writer/writer.cpuprofile (open it in Chrome DevTools' Performance panel)`);
} finally {
  await app.close();
  await schema.drop();
}
