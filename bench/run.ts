// `npm run bench` (after `npm run build`): every scenario measures its baseline and the
// module in the same run and prints the ratios. BENCH_QUICK=1 runs tiny sizes.
import os from 'node:os';
import { formatHttpOverhead, runHttpOverhead } from './http/http-overhead.bench.js';
import { formatIntegrity, runIntegrity } from './integrity/integrity.bench.js';
import { formatMemory, runMemory } from './memory/memory.bench.js';
import { formatRead, runRead } from './read/queries.bench.js';
import { formatPartitionPurge, runPartitionPurge } from './retention/partition-purge.bench.js';
import { FULL, QUICK } from './settings.js';
import { describeBuild, describeMachine } from './support/machine.js';
import { formatWriterThroughput, runWriterThroughput } from './writer/writer-throughput.bench.js';

const quick = process.env['BENCH_QUICK'] === '1';
/** `BENCH_ONLY=http` (or `writer`, `integrity`, `memory`, `read`, `retention`, comma-separated) runs only those scenarios. */
const only = (process.env['BENCH_ONLY'] ?? '').split(',').map((name) => name.trim()).filter(Boolean);
const wanted = (name: string): boolean => only.length === 0 || only.includes(name);
const settings = quick ? QUICK : FULL;
const started = Date.now();
const print = (lines: string[]): void => console.log(lines.join('\n') + '\n');
const load = (): string => os.loadavg().map((value) => value.toFixed(2)).join(', ');
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(0)} s`;

print([
  `nestjs-system-audit benchmarks${quick ? ' (BENCH_QUICK=1: tiny sizes, numbers not meaningful)' : ''}, ${new Date().toISOString()}`,
  ...(await describeMachine()),
  describeBuild(),
]);

const after = (): string => `  (${elapsed()}; load average with this benchmark running: ${load()})`;
if (wanted('http')) print(['[1/6] ' + formatHttpOverhead(await runHttpOverhead(settings.http)).join('\n'), after()]);
let writerPeak: number | undefined;
if (wanted('writer')) {
  const writer = await runWriterThroughput(settings.writer);
  writerPeak = writer.module.eventsPerSec;
  print(['[2/6] ' + formatWriterThroughput(writer).join('\n'), after()]);
}
if (wanted('integrity')) print(['[3/6] ' + formatIntegrity(await runIntegrity(settings.integrity), writerPeak).join('\n'), after()]);
if (wanted('memory')) print(['[4/6] ' + formatMemory(await runMemory(settings.memory)).join('\n'), after()]);
if (wanted('read')) print(['[5/6] ' + formatRead(await runRead(settings.read)).join('\n'), after()]);
if (wanted('retention')) print(['[6/6] ' + formatPartitionPurge(await runPartitionPurge(settings.retention)).join('\n'), after()]);
console.log(`done in ${elapsed()}`);
