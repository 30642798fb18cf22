// Where the machine's CPU goes per audited PATCH: the server process, PostgreSQL's
// processes and the load generator, for the module disabled, on, and on without
// `integrity` (so the integrator's share shows), under 32 connections, in alternating
// rounds. Not part of `npm run bench`; bench/PROFILE.md quotes it. Needs `npm run build`
// (the servers import the built package) and a PostgreSQL on this machine for its
// processes' CPU time (read from /proc; "n/a" elsewhere).
//
//   npm run build && node --import ./bench/support/register.mjs bench/http/cpu-split.ts
//   BENCH_SPLIT_ROUNDS=4 BENCH_SPLIT_SECONDS=10 BENCH_SPLIT_CONNECTIONS=32 …
//   BENCH_SPLIT_SEQUENCE_EVERY=100 adds a set-up whose integrator sequences every 100 ms.
import { readdirSync, readFileSync } from 'node:fs';
import { startServerProcess, type BenchServer } from './bench-server.js';
import type { BenchAppConfig } from './bench-app.module.js';
import { seedOrders } from './http-overhead.bench.js';
import { patchOrders } from './load.js';
import { createBenchSchema, type BenchSchema } from '../support/postgres.js';

const rounds = Number(process.env['BENCH_SPLIT_ROUNDS'] ?? 3);
const seconds = Number(process.env['BENCH_SPLIT_SECONDS'] ?? 10);
const connections = Number(process.env['BENCH_SPLIT_CONNECTIONS'] ?? 32);
const sequenceEvery = Number(process.env['BENCH_SPLIT_SEQUENCE_EVERY'] ?? 0);
const ORDERS = 10_000;
/** Linux's clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every common build). */
const TICKS = 100;

interface SetUp {
  label: string;
  config: Omit<BenchAppConfig, 'schema'>;
  schema?: BenchSchema;
  server?: BenchServer;
  requests: number;
  seconds: number;
  serverMs: number;
  postgresMs: number;
  loadgenMs: number;
  latencies: number[];
}

/**
 * CPU seconds (user + system) used so far by the processes named `postgres` and their ended
 * children, or undefined without /proc or PostgreSQL here. Other clients' work on the same
 * server counts too: run it on an otherwise idle machine.
 */
function postgresCpuSeconds(): number | undefined {
  let total = 0;
  let found = false;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    try {
      if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('postgres')) continue;
      // Fields after the command's closing parenthesis: utime, stime, cutime and cstime are the
      // 12th to 15th. The last two hold the CPU time of ended children (backends whose
      // connection closed, reaped by the postmaster), so that the sum never goes back.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICKS;
      found = true;
    } catch {
      // The process ended meanwhile.
    }
  }
  return found ? total : undefined;
}

const setUps: SetUp[] = (
  [
    { label: 'disabled', config: { mode: 'disabled' } },
    { label: 'module', config: { mode: 'module' } },
    { label: 'module, integrity off', config: { mode: 'module', integrity: false } },
    ...(sequenceEvery ? [{ label: `module, sequence ${sequenceEvery} ms`, config: { mode: 'module' as const, sequenceEvery } }] : []),
  ] satisfies Array<Pick<SetUp, 'label' | 'config'>>
).map((setUp) => ({ ...setUp, requests: 0, seconds: 0, serverMs: 0, postgresMs: 0, loadgenMs: 0, latencies: [] as number[] }));

let postgresMeasured = true;
try {
  for (const setUp of setUps) {
    setUp.schema = await createBenchSchema(`split_${setUp.label.replace(/\W+/g, '_')}`);
    setUp.server = await startServerProcess({ ...setUp.config, schema: setUp.schema.name });
    await seedOrders(setUp.schema, ORDERS);
    await patchOrders({ url: setUp.server.url, connections, orders: ORDERS, durationSeconds: 3 });
  }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? setUps : [...setUps].reverse();
    for (const setUp of order) {
      const server = setUp.server!;
      const [serverBefore, postgresBefore, loadgenBefore] = [(await server.sample()).cpuMicros, postgresCpuSeconds(), process.cpuUsage()];
      const result = await patchOrders({ url: server.url, connections, orders: ORDERS, durationSeconds: seconds });
      const [serverAfter, postgresAfter, loadgen] = [(await server.sample()).cpuMicros, postgresCpuSeconds(), process.cpuUsage(loadgenBefore)];
      setUp.requests += result.ok;
      for (const latency of result.latencies) setUp.latencies.push(latency);
      setUp.seconds += result.seconds;
      setUp.serverMs += (serverAfter - serverBefore) / 1000;
      setUp.loadgenMs += (loadgen.user + loadgen.system) / 1000;
      if (postgresBefore === undefined || postgresAfter === undefined) postgresMeasured = false;
      else setUp.postgresMs += (postgresAfter - postgresBefore) * 1000;
    }
  }
} finally {
  for (const setUp of setUps) {
    await setUp.server?.close();
    await setUp.schema?.drop();
  }
}

const perRequest = (ms: number, setUp: SetUp): string => (ms / setUp.requests).toFixed(3);
console.log(`PATCH /orders/:id, ${connections} connections, ${rounds} rounds of ${seconds} s each, alternating; CPU ms per 2xx response`);
console.log(['set-up'.padEnd(24), 'req/s'.padStart(7), 'server'.padStart(8), 'cores'.padStart(6), 'postgres'.padStart(9), 'loadgen'.padStart(8), 'total'.padStart(7), 'p50 ms'.padStart(7), 'p99 ms'.padStart(7)].join(' '));
for (const setUp of setUps) {
  const postgres = postgresMeasured ? perRequest(setUp.postgresMs, setUp) : 'n/a';
  const total = perRequest(setUp.serverMs + (postgresMeasured ? setUp.postgresMs : 0) + setUp.loadgenMs, setUp);
  console.log(
    [
      setUp.label.padEnd(24),
      (setUp.requests / setUp.seconds).toFixed(0).padStart(7),
      perRequest(setUp.serverMs, setUp).padStart(8),
      // The server's CPU time over the measured time, in cores: about 1 once its main thread is saturated (V8's helper threads add a little).
      (setUp.serverMs / 1000 / setUp.seconds).toFixed(2).padStart(6),
      postgres.padStart(9),
      perRequest(setUp.loadgenMs, setUp).padStart(8),
      total.padStart(7),
      percentile(setUp.latencies, 0.5).toFixed(2).padStart(7),
      percentile(setUp.latencies, 0.99).toFixed(2).padStart(7),
    ].join(' '),
  );
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}
