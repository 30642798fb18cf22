import type { HttpOverheadOptions } from './http/http-overhead.bench.js';
import type { IntegrityOptions } from './integrity/integrity.bench.js';
import type { MemoryOptions } from './memory/memory.bench.js';
import type { ReadOptions } from './read/queries.bench.js';
import type { PartitionPurgeOptions } from './retention/partition-purge.bench.js';
import type { ReadDatabase } from './read/seed.js';
import type { WriterOptions } from './writer/writer-throughput.bench.js';

export interface BenchSettings {
  http: HttpOverheadOptions;
  writer: WriterOptions;
  integrity: IntegrityOptions;
  memory: MemoryOptions;
  read: ReadOptions;
  retention: PartitionPurgeOptions;
}

/** `BENCH_MEMORY_SECONDS=600` runs the memory scenario for ten minutes. @default 40 */
const memorySeconds = Number(process.env['BENCH_MEMORY_SECONDS'] ?? '') || 40;

/** `BENCH_READ_DATABASES=postgres` (or `mariadb`) seeds and queries one database only. @default both */
const readDatabases = (process.env['BENCH_READ_DATABASES'] ?? 'postgres,mariadb')
  .split(',')
  .map((name) => name.trim())
  .filter((name): name is ReadDatabase => name === 'postgres' || name === 'mariadb');

/** The full run: about two and a half minutes on a 2-core machine. */
export const FULL: BenchSettings = {
  http: {
    connections: 32,
    warmupSeconds: 3,
    durationSeconds: 10,
    rounds: 4,
    serialSeconds: 4,
    curveConnections: [8, 128],
    curveSeconds: 4,
    orders: 10_000,
    server: 'process',
  },
  writer: { events: 40_000, warmupEvents: 1_000, moduleInFlight: [4_096, 256, 16, 1], naiveInFlight: 16, poolSize: 16 },
  /** `BENCH_VERIFY_EVENTS` overrides the size of the verified log. */
  integrity: { integratorEvents: 100_000, verifyEvents: Number(process.env['BENCH_VERIFY_EVENTS'] ?? '') || 1_000_000, sustainSeconds: 15 },
  memory: {
    connections: 32,
    warmupSeconds: 3,
    durationSeconds: memorySeconds,
    sampleEverySeconds: Math.max(10, Math.round(memorySeconds / 8)),
    orders: 10_000,
    server: 'process',
  },
  /** `BENCH_READ_EVENTS` overrides the number of seeded events. */
  read: { events: Number(process.env['BENCH_READ_EVENTS'] ?? '') || 1_000_000, runs: 200, limit: 50, deepPage: 20, deepRuns: 20, databases: readDatabases },
  /** `BENCH_RETENTION_EVENTS` overrides the number of events purged in each layout. */
  retention: { events: Number(process.env['BENCH_RETENTION_EVENTS'] ?? '') || 400_000 },
};

/** `BENCH_QUICK=1`: the same scenarios with tiny sizes, a second or two each, to check that they run. */
export const QUICK: BenchSettings = {
  http: { ...FULL.http, warmupSeconds: 0.5, durationSeconds: 1, rounds: 2, serialSeconds: 0.5, curveSeconds: 0.5, orders: 1_000 },
  writer: { ...FULL.writer, events: 1_000, warmupEvents: 100 },
  integrity: { integratorEvents: 2_000, verifyEvents: 5_000, sustainSeconds: 1 },
  memory: { ...FULL.memory, warmupSeconds: 0.5, durationSeconds: 2, sampleEverySeconds: 1, orders: 1_000 },
  read: { ...FULL.read, events: Number(process.env['BENCH_READ_EVENTS'] ?? '') || 5_000, runs: 20 },
  retention: { events: 3_000 },
};
