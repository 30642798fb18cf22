import { describe, expect, it } from 'vitest';
import { formatHttpOverhead, runHttpOverhead } from '../../bench/http/http-overhead.bench.js';
import { formatIntegrity, runIntegrity } from '../../bench/integrity/integrity.bench.js';
import { formatMemory, runMemory } from '../../bench/memory/memory.bench.js';
import { formatRead, runRead } from '../../bench/read/queries.bench.js';
import { formatPartitionPurge, runPartitionPurge } from '../../bench/retention/partition-purge.bench.js';
import { QUICK } from '../../bench/settings.js';
import { percentile, ratio, runConcurrently, table } from '../../bench/support/stats.js';
import { formatWriterThroughput, runWriterThroughput } from '../../bench/writer/writer-throughput.bench.js';
import { databases } from '../support/test-database.js';

// Keeps `npm run bench` from rotting: each scenario runs with tiny sizes, the server in
// this process and the package from lib/ (through the Vitest alias). The numbers mean
// nothing here; they only have to exist, be finite and add up.

const positive = (value: number): void => {
  expect(Number.isFinite(value), `${value} is finite`).toBe(true);
  expect(value).toBeGreaterThan(0);
};

const printable = (lines: string[]): void => {
  const text = lines.join('\n');
  expect(text).not.toMatch(/NaN|undefined|Infinity/);
  expect(lines.length).toBeGreaterThan(3);
};

describe('bench helpers', () => {
  it('takes nearest-rank percentiles', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('gives NaN, not Infinity, for a ratio over nothing', () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(3, 0)).toBeNaN();
  });

  it('keeps at most the given number of tasks in flight and runs each once', async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    await runConcurrently(50, 4, async (i) => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 1));
      seen.push(i);
      inFlight--;
    });
    expect(peak).toBe(4);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('aligns tables', () => {
    expect(table(['name', 'n'], [['a', '1'], ['long', '100']], '')).toEqual(['name    n', 'a       1', 'long  100']);
  });
});

const postgres = databases().includes('postgres');

// Without PostgreSQL the scenarios are skipped, except under CI=true, where they must run.
describe.skipIf(!postgres && process.env['CI'] !== 'true')('bench scenarios with tiny sizes on PostgreSQL', () => {
  it('has PostgreSQL to run on', () => {
    expect(databases()).toContain('postgres');
  });

  it('HTTP overhead: three configurations, ratios and a row for every audited request', async () => {
    const result = await runHttpOverhead({
      ...QUICK.http,
      connections: 8,
      warmupSeconds: 0.3,
      durationSeconds: 0.7,
      serialSeconds: 0.3,
      curveConnections: [2],
      curveSeconds: 0.3,
      orders: 200,
      server: 'in-process',
    });
    expect(result.curve.map((point) => point.connections)).toEqual([1, 2, 8]);
    for (const point of result.curve) positive(point.ratio);
    expect(result.modes.map((mode) => mode.mode)).toEqual(['disabled', 'module', 'naive']);
    for (const mode of result.modes) {
      positive(mode.load.reqPerSec);
      positive(mode.load.p50);
      positive(mode.load.p99);
      positive(mode.serial.p99);
      expect(mode.load.non2xx + mode.load.errors).toBe(0);
    }
    const [disabled, module, naive] = result.modes;
    expect(disabled!.intentRows + disabled!.changeRows).toBe(0);
    const ok = (mode: typeof module): number => mode!.warmup.ok + mode!.load.ok + mode!.serial.ok;
    expect(module!.intentRows).toBeGreaterThanOrEqual(ok(module));
    expect(naive!.changeRows).toBeGreaterThanOrEqual(ok(naive));
    positive(result.moduleRatio);
    positive(result.naiveRatio);
    expect(Number.isFinite(result.moduleP99OverheadMs)).toBe(true);
    expect(Number.isFinite(result.naiveP99OverheadMs)).toBe(true);
    expect(Number.isFinite(result.moduleSerialP99OverheadMs)).toBe(true);
    const lines = formatHttpOverhead(result);
    expect(lines.join('\n')).toMatch(/module \/ disabled: \d+\.\d\d× req\/s/);
    printable(lines);
  }, 120_000);

  it('writer throughput: module, naive and COPY each store every event of the same shape', async () => {
    const events = 300;
    const result = await runWriterThroughput({ ...QUICK.writer, events, warmupEvents: 20, moduleInFlight: [32, 1], naiveInFlight: 4, poolSize: 4 });
    expect(result.modules.map((run) => run.inFlight)).toEqual([32, 1]);
    for (const run of [...result.modules, result.naive, ...result.copyRuns]) {
      positive(run.eventsPerSec);
      expect(run.rows).toBe(run.events);
      // What the integrator had left of the run's events when it ended, and how long it took to sequence them.
      expect(run.backlog).toBeGreaterThanOrEqual(0);
      expect(run.backlog).toBeLessThanOrEqual(run.events);
      expect(run.drainSeconds).toBeGreaterThanOrEqual(0);
    }
    expect(result.modules[0]!.events).toBe(events);
    expect(result.modules[1]!.events).toBe(events / 10);
    expect(result.problems).toEqual([]);
    positive(result.rowBytes);
    positive(result.moduleVsCopy);
    positive(result.moduleVsNaive);
    const lines = formatWriterThroughput(result);
    expect(lines.join('\n')).toMatch(/module peak \/ COPY: {2}\d+\.\d\d×/);
    expect(lines.join('\n')).toMatch(/unsequenced at end +then sequenced in s/);
    printable(lines);
  }, 120_000);

  it('read side: every query timed and explained, every export complete, with its memory', async () => {
    const result = await runRead({ ...QUICK.read, events: 2_000, runs: 3, deepPage: 3, deepRuns: 1, databases: ['postgres'] });
    const [run] = result.runs;
    expect(run!.seed.events).toBe(2_000);
    expect(run!.queries.map((query) => query.name)).toEqual(['find by actor', 'find by target', 'find by action + 7 days', 'find by source + outcome', 'history(target)']);
    for (const query of run!.queries) {
      expect(query.first).toHaveLength(3);
      expect(query.explains.length).toBeGreaterThan(0);
    }
    expect(run!.bulk.map((bulk) => bulk.name.replace(/ before \d{4}-\d{2}-\d{2} /, ' before … '))).toEqual([
      'export() jsonl, whole trail',
      'export() csv, whole trail',
      'export() jsonl, source admin + outcome success',
      'purge(), events before … (the older half), batches of 5,000',
    ]);
    for (const bulk of run!.bulk) {
      expect(bulk.rows).toBe(bulk.expectedRows);
      positive(bulk.rows);
      if (bulk.name.startsWith('export()')) positive(bulk.bytes);
      positive(bulk.rowsPerSec);
      positive(bulk.rssPeakMb);
      expect(bulk.rssPeakMb).toBeGreaterThanOrEqual(bulk.rssBeforeMb);
      expect(bulk.explains[0]?.page).toBe('first page');
    }
    // 2,000 rows are two pages of the export: the second one's keyset statement is explained too.
    expect(run!.bulk[0]!.rows).toBe(2_000);
    expect(run!.bulk[0]!.explains.map((e) => e.page)).toEqual(['first page', 'next page']);
    // The purge removed the older half of the seeded days (what it counted before).
    expect(run!.bulk[3]!.rows).toBeGreaterThan(500);
    expect(run!.bulk[3]!.rows).toBeLessThan(1_500);
    printable(formatRead(result));
  }, 180_000);

  it('integrity: the integrator on a backlog and beside the writer, verify() and a purge', async () => {
    const result = await runIntegrity({ integratorEvents: 2_000, verifyEvents: 3_000, sustainSeconds: 1 });
    expect(result.problems).toEqual([]);
    positive(result.integrator.eventsPerSec);
    const { sustained } = result;
    positive(sustained.events);
    positive(sustained.eventsPerSec);
    expect(sustained.backlog).toBeGreaterThanOrEqual(0);
    expect(sustained.backlog).toBeLessThanOrEqual(sustained.events);
    expect(sustained.integratorPerSec).toBeCloseTo((sustained.events - sustained.backlog) / sustained.seconds, 6);
    expect(sustained.allowedBacklog).toBeGreaterThan(2_000);
    expect(result.verify).toMatchObject({ ok: true, problems: 0 });
    expect(result.purge).toMatchObject({ verifyOk: true });
    positive(result.purge.deleted);
    const lines = formatIntegrity(result, sustained.eventsPerSec);
    expect(lines.join('\n')).toMatch(/sustained: log\(\) with 4,096 in flight for \d+\.\d s, .* — (keeps up|FALLS BEHIND)/);
    printable(lines);
  }, 120_000);

  it('retention: the same events purged from one table and from monthly partitions', async () => {
    const result = await runPartitionPurge({ events: 2_000 });
    expect(result.problems).toEqual([]);
    const [rows, partitions] = result.runs;
    expect(rows!.deleted).toBeGreaterThan(500);
    expect(partitions!.deleted).toBe(rows!.deleted);
    expect(partitions!.partitionsAfter).toBe(partitions!.partitionsBefore! - 6);
    positive(partitions!.migrateSeconds!);
    printable(formatPartitionPurge(result));
  }, 120_000);

  it('memory: samples before, during and after a sustained run', async () => {
    const result = await runMemory({
      ...QUICK.memory,
      connections: 8,
      warmupSeconds: 0.3,
      durationSeconds: 1,
      sampleEverySeconds: 0.5,
      orders: 200,
      server: 'in-process',
    });
    expect(result.points.length).toBe(3);
    for (const point of result.points) {
      positive(point.memory.rss);
      positive(point.memory.heapUsed);
    }
    positive(result.requests);
    positive(result.reqPerSec);
    expect(Number.isFinite(result.rssGrowth) && Number.isFinite(result.heapGrowth)).toBe(true);
    expect(result.auditRows).toBeGreaterThanOrEqual(result.requests);
    printable(formatMemory(result));
  }, 120_000);
});
