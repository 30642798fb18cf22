import { seedOrders } from '../http/http-overhead.bench.js';
import { startInProcessServer, startServerProcess, type BenchServer, type ProcessSample } from '../http/bench-server.js';
import { patchOrders, type LoadResult } from '../http/load.js';
import { createBenchSchema, settledCount } from '../support/postgres.js';
import { fixed, int, mib, signedMib, table } from '../support/stats.js';

export interface MemoryOptions {
  connections: number;
  warmupSeconds: number;
  /** Length of the sustained run. */
  durationSeconds: number;
  /** A memory sample (after a full GC) every this many seconds of load. */
  sampleEverySeconds: number;
  orders: number;
  server: 'process' | 'in-process';
}

export interface MemoryPoint {
  /** Seconds of load so far. */
  at: number;
  /** 2xx responses so far. */
  requests: number;
  memory: ProcessSample;
}

export interface MemoryResult {
  options: MemoryOptions;
  /** After the warm-up, then after each slice of load; all after a full GC. */
  points: MemoryPoint[];
  requests: number;
  reqPerSec: number;
  /** Last point minus first, in bytes. */
  rssGrowth: number;
  heapGrowth: number;
  /** `order.updated` intent rows stored during the sustained run. */
  auditRows: number;
  problems: string[];
}

/**
 * The HTTP scenario with the module on, sustained: memory of the server process after
 * a full GC before, during and after the load.
 */
export async function runMemory(options: MemoryOptions): Promise<MemoryResult> {
  const schema = await createBenchSchema('memory');
  let server: BenchServer | undefined;
  try {
    const config = { mode: 'module' as const, schema: schema.name };
    server = options.server === 'process' ? await startServerProcess(config) : await startInProcessServer(config);
    await seedOrders(schema, options.orders);
    const load = { url: server.url, connections: options.connections, orders: options.orders };
    const intentRows = (): Promise<number> =>
      settledCount(schema, `SELECT count(*) AS n FROM ${schema.table('audit_log')} WHERE kind = 'intent'`);
    await patchOrders({ ...load, durationSeconds: options.warmupSeconds });
    const rowsBefore = await intentRows();
    const points: MemoryPoint[] = [{ at: 0, requests: 0, memory: await server.sample(true) }];
    const runs: LoadResult[] = [];
    let at = 0;
    while (at < options.durationSeconds - 1e-9) {
      const slice = Math.min(options.sampleEverySeconds, options.durationSeconds - at);
      runs.push(await patchOrders({ ...load, durationSeconds: slice }));
      at += slice;
      points.push({ at, requests: sum(runs, 'ok'), memory: await server.sample(true) });
    }
    const auditRows = (await intentRows()) - rowsBefore;
    const requests = sum(runs, 'ok');
    const problems: string[] = [];
    const failed = sum(runs, 'non2xx') + sum(runs, 'errors');
    if (failed) problems.push(`${failed} requests failed (non-2xx or socket errors)`);
    if (auditRows < requests) problems.push(`only ${auditRows} audit rows for ${requests} 2xx responses`);
    const cutOff = runs.length * options.connections;
    if (auditRows > requests + failed + cutOff) problems.push(`${auditRows} audit rows for ${requests + failed} answered requests (+ at most ${cutOff} cut off)`);
    const first = points[0]!.memory;
    const last = points[points.length - 1]!.memory;
    return {
      options,
      points,
      requests,
      reqPerSec: requests / sum(runs, 'seconds'),
      rssGrowth: last.rss - first.rss,
      heapGrowth: last.heapUsed - first.heapUsed,
      auditRows,
      problems,
    };
  } finally {
    await server?.close();
    await schema.drop();
  }
}

const sum = (runs: LoadResult[], field: 'ok' | 'non2xx' | 'errors' | 'seconds'): number =>
  runs.reduce((total, run) => total + run[field], 0);

export function formatMemory(result: MemoryResult): string[] {
  const { options, points } = result;
  const first = points[0]!.memory;
  const rows = points.map((point) => [
    fixed(point.at, 0),
    int(point.requests),
    mib(point.memory.rss),
    mib(point.memory.heapUsed),
    mib(point.memory.heapTotal),
    mib(point.memory.external),
  ]);
  const lines = [
    `Memory: module on, PATCH /orders/:id at ${options.connections} connections for ${options.durationSeconds} s after a ${options.warmupSeconds} s warm-up; server ${options.server === 'process' ? 'process' : '(this process)'} sampled after a full GC`,
    ...table(['load s', '2xx so far', 'rss MiB', 'heap used MiB', 'heap total MiB', 'external MiB'], rows),
    `  growth over ${int(result.requests)} requests (${int(result.reqPerSec)} req/s): rss ${signedMib(result.rssGrowth)} MiB (${fixed((100 * result.rssGrowth) / first.rss)}%), heap used ${signedMib(result.heapGrowth)} MiB (${fixed((100 * result.heapGrowth) / first.heapUsed)}%)`,
  ];
  if (points.length > 2) {
    const middle = points[Math.floor((points.length - 1) / 2)]!;
    const last = points[points.length - 1]!;
    lines.push(
      `  second half (${fixed(middle.at, 0)} s to ${fixed(last.at, 0)} s): rss ${signedMib(last.memory.rss - middle.memory.rss)} MiB, heap used ${signedMib(last.memory.heapUsed - middle.memory.heapUsed)} MiB`,
    );
  }
  lines.push(`  intent rows written during the run: ${int(result.auditRows)} (2xx responses plus requests cut off at the end of each slice)`);
  for (const problem of result.problems) lines.push(`  !! ${problem}`);
  return lines;
}
