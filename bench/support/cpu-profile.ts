// Reading V8 CPU profiles (`.cpuprofile`, from `--cpu-prof` or the inspector): self time
// per unit of work (a request, an event), by component and by function; and V8's sampled
// allocation profiles (`.heapprofile`): bytes allocated per unit, the same way.

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame }>;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** µs of CPU per unit, by component (the module, TypeORM, pg, Node's internals…). */
  components: Map<string, number>;
  /** µs of CPU per unit, by function (`name file:line`). */
  functions: Map<string, number>;
}

type CallFrame = { functionName: string; url: string; lineNumber: number };

/** A summary to which `add` adds an amount spent by a function. */
function summary(): ProfileSummary & { add(frame: CallFrame, amount: number): void } {
  const components = new Map<string, number>();
  const functions = new Map<string, number>();
  const add = ({ functionName, url, lineNumber }: CallFrame, amount: number): void => {
    const part = component(url, functionName);
    components.set(part, (components.get(part) ?? 0) + amount);
    const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(dist|lib|bench)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    functions.set(key, (functions.get(key) ?? 0) + amount);
  };
  return { components, functions, add };
}

/** Self time of every sampled function of `profile`, divided by `units`. */
export function summarize(profile: CpuProfile, units: number): ProfileSummary {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const { components, functions, add } = summary();
  for (const node of profile.nodes) {
    const micros = (self.get(node.id) ?? 0) / units;
    if (micros > 0) add(node.callFrame, micros);
  }
  return { components, functions };
}

export interface HeapProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapProfileNode[];
}

/** Bytes allocated (sampled estimate) by every function of `profile`, divided by `units`. */
export function summarizeHeap(profile: { head: HeapProfileNode }, units: number): ProfileSummary {
  const { components, functions, add } = summary();
  const visit = (node: HeapProfileNode): void => {
    if (node.selfSize > 0) add(node.callFrame, node.selfSize / units);
    for (const child of node.children) visit(child);
  };
  visit(profile.head);
  return { components, functions };
}

/** Which part of the process a profiled function belongs to. */
export function component(url: string, functionName: string): string {
  if (functionName === '(idle)') return '(idle)';
  if (!url) return functionName.startsWith('(') ? functionName : 'native (syscalls, JSON, RegExp…)';
  if (/\/dist\/(esm|cjs)\//.test(url) && !url.includes('node_modules')) return 'nestjs-system-audit';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg.startsWith('pg') || pkg.startsWith('postgres-') ? 'pg driver' : pkg;
  if (url.startsWith('node:')) return url.includes('async_hooks') ? 'node async_hooks (AsyncLocalStorage)' : 'node internals';
  return 'app and bench';
}

/** The components table of one or two summaries (the second minus the first as a last column). */
export function componentTable(labels: readonly string[], summaries: readonly ProfileSummary[], unit: string, measure = 'CPU µs'): string[] {
  const names = [...new Set(summaries.flatMap((s) => [...s.components.keys()]))].filter((name) => name !== '(idle)');
  const value = (s: ProfileSummary | undefined, name: string): number => s?.components.get(name) ?? 0;
  const two = summaries.length > 1;
  const diff = (name: string): number => value(summaries[1], name) - value(summaries[0], name);
  names.sort((a, b) => (two ? diff(b) - diff(a) : value(summaries[0], b) - value(summaries[0], a)));
  const busy = (s: ProfileSummary): number => names.reduce((sum, name) => sum + value(s, name), 0);
  const cell = (n: number): string => n.toFixed(0).padStart(10);
  const lines = [
    `${measure} per ${unit} by component (self):`,
    `${'component'.padEnd(40)}${labels.map((label) => label.padStart(10)).join('')}${two ? 'difference'.padStart(12) : ''}`,
  ];
  for (const name of names.slice(0, 16)) {
    lines.push(`${name.padEnd(40)}${summaries.map((s) => cell(value(s, name))).join('')}${two ? cell(diff(name)).padStart(12) : ''}`);
  }
  lines.push(
    `${'total (not idle)'.padEnd(40)}${summaries.map((s) => cell(busy(s))).join('')}${two ? cell(busy(summaries[1]!) - busy(summaries[0]!)).padStart(12) : ''}`,
  );
  return lines;
}

/** The `count` functions with the most self time, µs per unit. */
export function topFunctions(summary: ProfileSummary, count: number): string[] {
  return [...summary.functions]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([key, micros]) => `${micros.toFixed(1).padStart(7)}  ${key}`);
}
