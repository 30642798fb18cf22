import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { percentile } from '../support/stats.js';

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  /** Orders 1…orders exist; each request picks one at random. */
  orders: number;
}

export interface LoadResult {
  seconds: number;
  /** 2xx responses. */
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** 2xx responses per second. */
  reqPerSec: number;
  /** Latency of 2xx responses in ms, from autocannon's per-response timings (sub-ms resolution). */
  p50: number;
  p99: number;
  max: number;
  /** Every 2xx latency, ascending. */
  latencies: number[];
}

const randomInt = (min: number, max: number): number => min + Math.floor(Math.random() * (max - min + 1));

/**
 * Loads `PATCH /orders/:id` with a random id and a random total (so every request
 * changes the row) as the sample's customer `bob`, who owns every seeded order.
 */
export async function patchOrders(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const started = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSeconds,
        timeout: 10,
        requests: [
          {
            method: 'PATCH',
            path: '/orders/1',
            headers: { authorization: 'Bearer bob-token', 'content-type': 'application/json' },
            setupRequest: (request) => ({
              ...request,
              path: `/orders/${randomInt(1, options.orders)}`,
              body: JSON.stringify({ totalCents: randomInt(1, 100_000_000) }),
            }),
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    seconds,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    reqPerSec: result['2xx'] / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? Number.NaN,
    latencies,
  };
}

/** Several runs against the same server as one: counts and time added, latencies pooled. */
export function mergeLoads(runs: readonly LoadResult[]): LoadResult {
  const add = (field: 'seconds' | 'ok' | 'non2xx' | 'errors' | 'timeouts'): number => runs.reduce((sum, run) => sum + run[field], 0);
  const latencies = runs.flatMap((run) => run.latencies).sort((a, b) => a - b);
  const seconds = add('seconds');
  return {
    seconds,
    ok: add('ok'),
    non2xx: add('non2xx'),
    errors: add('errors'),
    timeouts: add('timeouts'),
    reqPerSec: add('ok') / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? Number.NaN,
    latencies,
  };
}
