// `npm run bench:profile`: a CPU profile of the audited PATCH of the bench app (module on)
// under 32 connections for 10 s, written to bench/profiles/, and its top functions by
// self time printed. Needs `npm run build` (the server imports the built package).
import { fork } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AuditMode } from './bench-app.module.js';
import { seedOrders } from './http-overhead.bench.js';
import { patchOrders } from './load.js';
import { createBenchSchema } from '../support/postgres.js';

const mode = (process.env['BENCH_PROFILE_MODE'] ?? 'module') as AuditMode;
const dir = fileURLToPath(new URL(`../profiles/${mode}`, import.meta.url));
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const schema = await createBenchSchema(`profile_${mode}`);
const child = fork(fileURLToPath(new URL('./bench-server.process.ts', import.meta.url)), [JSON.stringify({ mode, schema: schema.name })], {
  execArgv: ['--import', new URL('../support/register.mjs', import.meta.url).href, '--cpu-prof', `--cpu-prof-dir=${dir}`],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
try {
  const url = await new Promise<string>((resolve) => child.on('message', (m: { type: string; url?: string }) => m.type === 'ready' && resolve(m.url!)));
  await seedOrders(schema, 10_000);
  await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 3 });
  const result = await patchOrders({ url, connections: 32, orders: 10_000, durationSeconds: 10 });
  console.log(`${mode}: ${result.ok} requests, ${(result.ok / result.seconds).toFixed(0)} req/s`);
  child.send({ type: 'close' });
  await new Promise((resolve) => child.once('exit', resolve));
} finally {
  await schema.drop();
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
// One profile per thread (the module loader has its own): the main thread's is the largest.
const file = readdirSync(dir)
  .filter((name) => name.endsWith('.cpuprofile'))
  .map((name) => ({ name, size: statSync(`${dir}/${name}`).size }))
  .sort((a, b) => b.size - a.size)[0]!.name;
const profile = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const byFunction = new Map<string, number>();
for (const node of profile.nodes) {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(dist|lib)\//, '$1/');
  const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + (self.get(node.id) ?? 0));
}
const total = [...byFunction.values()].reduce((a, b) => a + b, 0);
console.log(`profile: ${dir}/${file}; top functions by self time:`);
for (const [key, micros] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 45)) {
  console.log(`${((micros / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
}
