// `npm run bench:profile` (with bench/writer/profile.ts): CPU profiles of the bench app's
// audited PATCH under 32 connections for 10 s, after a 3 s warm-up that is not
// profiled, with the module disabled and on (BENCH_PROFILE_MODE=module or disabled
// profiles only that one), written to bench/profiles/<mode>/server.cpuprofile. Prints
// the CPU time per request by component (the module, TypeORM, pg, Node's internals,
// syscalls…) for each and the difference, then the module's top functions. Needs `npm
// run build` (the server imports the built package). The profiler slows everything
// down: read the figures as shares and differences, not as absolute costs.
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AuditMode } from './bench-app.module.js';
import { seedOrders } from './http-overhead.bench.js';
import { patchOrders } from './load.js';
import { componentTable, summarize, summarizeHeap, topFunctions, type CpuProfile, type HeapProfileNode, type ProfileSummary } from '../support/cpu-profile.js';
import { createBenchSchema } from '../support/postgres.js';

interface Measured {
  mode: AuditMode;
  requests: number;
  summary: ProfileSummary;
}

const only = process.env['BENCH_PROFILE_MODE'] as AuditMode | undefined;
// BENCH_PROFILE_KIND=heap: bytes allocated per request (V8's allocation sampler) instead of CPU time.
const heap = process.env['BENCH_PROFILE_KIND'] === 'heap';
const modes: AuditMode[] = only ? [only] : ['disabled', 'module'];

async function profile(mode: AuditMode): Promise<Measured> {
  const dir = fileURLToPath(new URL(`../profiles/${mode}`, import.meta.url));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const file = heap ? `${dir}/server.heapprofile` : `${dir}/server.cpuprofile`;
  const schema = await createBenchSchema(`profile_${mode}`);
  const child = fork(fileURLToPath(new URL('./bench-server.process.ts', import.meta.url)), [JSON.stringify({ mode, schema: schema.name })], {
    execArgv: ['--import', new URL('../support/register.mjs', import.meta.url).href],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const reply = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const listener = (message: { type: string }): void => {
        if (message.type !== type) return;
        child.off('message', listener);
        resolve(message as T);
      };
      child.on('message', listener);
    });
  let requests: number;
  try {
    const { url } = await reply<{ url: string }>('ready');
    await seedOrders(schema, 10_000);
    await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 3 });
    const profiling = reply('profiling');
    child.send({ type: 'profile-start' });
    await profiling;
    const result = await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 10 });
    const profiled = reply('profiled');
    child.send({ type: 'profile-stop', file });
    await profiled;
    requests = result.ok + result.non2xx;
    console.log(`${mode}: ${result.ok} requests in 10 s, ${(result.ok / result.seconds).toFixed(0)} req/s (under the profiler)`);
    child.send({ type: 'close' });
    await new Promise((resolve) => child.once('exit', resolve));
  } finally {
    await schema.drop();
  }
  const profiled = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  const summary = heap ? summarizeHeap(profiled as { head: HeapProfileNode }, requests) : summarize(profiled as CpuProfile, requests);
  return { mode, requests, summary };
}

const measured: Measured[] = [];
for (const mode of modes) measured.push(await profile(mode));
console.log(['', ...componentTable(measured.map((m) => m.mode), measured.map((m) => m.summary), 'request', heap ? 'bytes allocated' : 'CPU µs')].join('\n'));
const last = measured[measured.length - 1]!;
console.log([`\n${last.mode}: top functions by ${heap ? 'bytes allocated' : 'self time, µs'} per request:`, ...topFunctions(last.summary, 45)].join('\n'));
