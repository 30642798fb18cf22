// `npm run bench:profile`: CPU profiles of the bench app's audited PATCH under 32
// connections for 10 s, with the module disabled and on (BENCH_PROFILE_MODE=module or
// disabled profiles only that one), written to bench/profiles/<mode>/. Prints the CPU
// time per request by component (the module, TypeORM, pg, Node's internals, syscalls…)
// for each and the difference, then the module's top functions. Needs `npm run build`
// (the server imports the built package). The profiler slows everything down by about
// a third: read the figures as shares, not as absolute costs.
import { fork } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AuditMode } from './bench-app.module.js';
import { seedOrders } from './http-overhead.bench.js';
import { patchOrders } from './load.js';
import { createBenchSchema } from '../support/postgres.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}
interface Measured {
  mode: AuditMode;
  requests: number;
  /** µs of CPU per request, by component and by function. */
  components: Map<string, number>;
  functions: Map<string, number>;
}

const only = process.env['BENCH_PROFILE_MODE'] as AuditMode | undefined;
const modes: AuditMode[] = only ? [only] : ['disabled', 'module'];

async function profile(mode: AuditMode): Promise<Measured> {
  const dir = fileURLToPath(new URL(`../profiles/${mode}`, import.meta.url));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const schema = await createBenchSchema(`profile_${mode}`);
  const child = fork(fileURLToPath(new URL('./bench-server.process.ts', import.meta.url)), [JSON.stringify({ mode, schema: schema.name })], {
    execArgv: ['--import', new URL('../support/register.mjs', import.meta.url).href, '--cpu-prof', `--cpu-prof-dir=${dir}`],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let requests: number;
  try {
    const url = await new Promise<string>((resolve) => child.on('message', (m: { type: string; url?: string }) => m.type === 'ready' && resolve(m.url!)));
    await seedOrders(schema, 10_000);
    // The warm-up is in the profile too: counted as requests, so that costs are per request.
    const warmup = await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 3 });
    const result = await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 10 });
    requests = warmup.ok + result.ok;
    console.log(`${mode}: ${result.ok} requests in 10 s, ${(result.ok / result.seconds).toFixed(0)} req/s (under the profiler)`);
    child.send({ type: 'close' });
    await new Promise((resolve) => child.once('exit', resolve));
  } finally {
    await schema.drop();
  }
  // One profile per thread (the module loader has its own): the main thread's is the largest.
  const file = readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((name) => ({ name, size: statSync(`${dir}/${name}`).size }))
    .sort((a, b) => b.size - a.size)[0]!.name;
  const data = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')) as Profile;
  const self = new Map<number, number>();
  data.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (data.timeDeltas[i] ?? 0)));
  const components = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const node of data.nodes) {
    const micros = (self.get(node.id) ?? 0) / requests;
    if (micros === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const part = component(url, functionName);
    components.set(part, (components.get(part) ?? 0) + micros);
    const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(dist|lib)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    functions.set(key, (functions.get(key) ?? 0) + micros);
  }
  return { mode, requests, components, functions };
}

/** Which part of the server a profiled function belongs to. */
function component(url: string, functionName: string): string {
  if (functionName === '(idle)') return '(idle)';
  if (!url) return functionName.startsWith('(') ? functionName : 'native (syscalls, JSON, RegExp…)';
  if (/\/dist\/(esm|cjs)\//.test(url) && !url.includes('node_modules')) return 'nestjs-system-audit';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg.startsWith('pg') || pkg.startsWith('postgres-') ? 'pg driver' : pkg;
  if (url.startsWith('node:')) return url.includes('async_hooks') ? 'node async_hooks (AsyncLocalStorage)' : 'node internals';
  return 'app and bench';
}

const measured: Measured[] = [];
for (const mode of modes) measured.push(await profile(mode));

const names = [...new Set(measured.flatMap((m) => [...m.components.keys()]))].filter((name) => name !== '(idle)');
const busy = (m: Measured): number => names.reduce((sum, name) => sum + (m.components.get(name) ?? 0), 0);
const diff = (name: string): number => (measured[1]?.components.get(name) ?? 0) - (measured[0]!.components.get(name) ?? 0);
names.sort((a, b) => (measured.length > 1 ? diff(b) - diff(a) : (measured[0]!.components.get(b) ?? 0) - (measured[0]!.components.get(a) ?? 0)));
const cell = (value: number): string => value.toFixed(0).padStart(10);
console.log(`\nCPU µs per request by component (self time; profiles in bench/profiles/):`);
console.log(`${'component'.padEnd(40)}${measured.map((m) => m.mode.padStart(10)).join('')}${measured.length > 1 ? 'difference'.padStart(12) : ''}`);
for (const name of names.slice(0, 16)) {
  console.log(`${name.padEnd(40)}${measured.map((m) => cell(m.components.get(name) ?? 0)).join('')}${measured.length > 1 ? cell(diff(name)).padStart(12) : ''}`);
}
console.log(`${'total (not idle)'.padEnd(40)}${measured.map((m) => cell(busy(m))).join('')}${measured.length > 1 ? cell(busy(measured[1]!) - busy(measured[0]!)).padStart(12) : ''}`);

const last = measured[measured.length - 1]!;
console.log(`\n${last.mode}: top functions by self time, µs per request:`);
for (const [key, micros] of [...last.functions].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(`${micros.toFixed(1).padStart(7)}  ${key}`);
}
