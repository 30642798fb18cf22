import { createBenchSchema, settledCount, type BenchSchema } from '../support/postgres.js';
import { fixed, int, ratio, signedMs, table, times, verdict } from '../support/stats.js';
import { AUDIT_MODES, type AuditMode } from './bench-app.module.js';
import { startInProcessServer, startServerProcess, type BenchServer } from './bench-server.js';
import { mergeLoads, patchOrders, type LoadResult } from './load.js';

export interface HttpOverheadOptions {
  connections: number;
  /** Warm-up per configuration, before any measurement. */
  warmupSeconds: number;
  /** Measured load per configuration, split over `rounds`. */
  durationSeconds: number;
  /**
   * The measured load runs in rounds, configurations in alternating order (disabled,
   * module, naive, then naive, module, disabled, …), so that a drift in what else the
   * machine is doing does not favour one configuration.
   */
  rounds: number;
  /** Then one connection per configuration for this long (in the same rounds): latency without queueing. */
  serialSeconds: number;
  /**
   * The scaling curve: the module on and disabled at these other numbers of connections,
   * `curveSeconds` each per configuration (in `rounds` rounds); with the main load and one
   * connection, the ratio at 1, 8, 32 and 128 connections.
   */
  curveConnections: number[];
  curveSeconds: number;
  /** Orders seeded per configuration; requests pick one at random. */
  orders: number;
  /** `process`: the server in a child process (the real run); `in-process`: the smoke test. */
  server: 'process' | 'in-process';
}

export interface HttpModeResult {
  mode: AuditMode;
  warmup: LoadResult;
  load: LoadResult;
  /** One connection at a time: each request's own latency, no queueing behind others. */
  serial: LoadResult;
  /** The scaling curve's loads by number of connections (module on and disabled only). */
  curve: Map<number, LoadResult>;
  /** Server CPU time (user + system) per 2xx response of the measured run, in ms; NaN in-process. */
  cpuMsPerRequest: number;
  /** Rows in `audit_log` after both runs, by kind. */
  intentRows: number;
  changeRows: number;
  /** Module on: fallback rows whose request's intent row has no changes (the change was logged apart from its intent). */
  splitChanges: number;
  /** What the server printed: Nest warnings and errors (e.g. failed audit writes). */
  serverOutput: string[];
  /** Empty when the audit rows match the requests, else what is off. */
  problems: string[];
}

export interface HttpOverheadResult {
  options: HttpOverheadOptions;
  modes: HttpModeResult[];
  /** req/s of the module on / module disabled. */
  moduleRatio: number;
  naiveRatio: number;
  /** p99 latency of the module on minus module disabled, in ms. */
  moduleP99OverheadMs: number;
  naiveP99OverheadMs: number;
  /** The same at one connection. */
  moduleSerialP99OverheadMs: number;
  naiveSerialP99OverheadMs: number;
  /** Module on / disabled, by number of connections (1, the curve's and the main load's), ascending. */
  curve: CurvePoint[];
}

export interface CurvePoint {
  connections: number;
  disabled: LoadResult;
  module: LoadResult;
  ratio: number;
}

export const LABELS: Record<AuditMode, string> = {
  disabled: 'module disabled',
  module: 'module on',
  naive: 'naive subscriber',
};

/** The targets: at least 90% of the disabled throughput at 32 connections, p99 overhead under 1 ms at one connection. */
export const HTTP_TARGETS = { minRatio: 0.9, maxSerialP99OverheadMs: 1 };

/**
 * `PATCH /orders/:id` of the sample app (`@Audited('order.updated')`: load the order,
 * change it, save it) under autocannon, in each audit configuration: one server per
 * configuration, each on fresh tables in a schema of its own, dropped afterwards.
 */
export async function runHttpOverhead(options: HttpOverheadOptions): Promise<HttpOverheadResult> {
  const setups: ModeSetup[] = [];
  try {
    for (const mode of AUDIT_MODES) setups.push(await startMode(mode, options));
    for (const setup of setups) setup.warmup = await patchOrders({ ...setup.load, durationSeconds: options.warmupSeconds });
    await inRounds(setups, options.rounds, async (setup) => {
      const before = await setup.server.sample();
      setup.runs.push(await patchOrders({ ...setup.load, durationSeconds: options.durationSeconds / options.rounds }));
      setup.cpuMicros += (await setup.server.sample()).cpuMicros - before.cpuMicros;
    });
    await inRounds(setups, options.rounds, async (setup) => {
      setup.serialRuns.push(await patchOrders({ ...setup.load, connections: 1, durationSeconds: options.serialSeconds / options.rounds }));
    });
    const curved = setups.filter((setup) => setup.mode !== 'naive');
    for (const connections of options.curveConnections) {
      await inRounds(curved, options.rounds, async (setup) => {
        const runs = setup.curveRuns.get(connections) ?? [];
        runs.push(await patchOrders({ ...setup.load, connections, durationSeconds: options.curveSeconds / options.rounds }));
        setup.curveRuns.set(connections, runs);
      });
    }
    const modes: HttpModeResult[] = [];
    for (const setup of setups) modes.push(await finish(setup, options));
    const [disabled, module, naive] = modes as [HttpModeResult, HttpModeResult, HttpModeResult];
    return {
      options,
      modes,
      moduleRatio: ratio(module.load.reqPerSec, disabled.load.reqPerSec),
      naiveRatio: ratio(naive.load.reqPerSec, disabled.load.reqPerSec),
      moduleP99OverheadMs: module.load.p99 - disabled.load.p99,
      naiveP99OverheadMs: naive.load.p99 - disabled.load.p99,
      moduleSerialP99OverheadMs: module.serial.p99 - disabled.serial.p99,
      naiveSerialP99OverheadMs: naive.serial.p99 - disabled.serial.p99,
      curve: curvePoints(disabled, module, options),
    };
  } finally {
    for (const setup of setups) await setup.server.close();
    for (const setup of setups) await setup.schema.drop();
  }
}

/** The ratio at one connection, at each of the curve's, and at the main load's, by number of connections. */
function curvePoints(disabled: HttpModeResult, module: HttpModeResult, options: HttpOverheadOptions): CurvePoint[] {
  const point = (connections: number, a: LoadResult, b: LoadResult): CurvePoint => ({ connections, disabled: a, module: b, ratio: ratio(b.reqPerSec, a.reqPerSec) });
  const points = [point(1, disabled.serial, module.serial), point(options.connections, disabled.load, module.load)];
  for (const connections of options.curveConnections) points.push(point(connections, disabled.curve.get(connections)!, module.curve.get(connections)!));
  return points.sort((a, b) => a.connections - b.connections);
}

/** `rounds` passes over the configurations, in alternating order (A B C, C B A, A B C, …). */
async function inRounds(setups: ModeSetup[], rounds: number, run: (setup: ModeSetup) => Promise<void>): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (const setup of round % 2 === 0 ? setups : [...setups].reverse()) await run(setup);
  }
}

interface ModeSetup {
  mode: AuditMode;
  schema: BenchSchema;
  server: BenchServer;
  load: { url: string; connections: number; orders: number };
  warmup?: LoadResult;
  runs: LoadResult[];
  serialRuns: LoadResult[];
  curveRuns: Map<number, LoadResult[]>;
  cpuMicros: number;
}

/** A schema, a server in `mode` and the seeded orders; on failure, cleans up what it made. */
async function startMode(mode: AuditMode, options: HttpOverheadOptions): Promise<ModeSetup> {
  const schema = await createBenchSchema(`http_${mode}`);
  let server: BenchServer | undefined;
  try {
    const config = { mode, schema: schema.name };
    server = options.server === 'process' ? await startServerProcess(config) : await startInProcessServer(config, true);
    // The tables exist once the app is up (synchronize + the audit migration).
    await seedOrders(schema, options.orders);
    return { mode, schema, server, load: { url: server.url, connections: options.connections, orders: options.orders }, runs: [], serialRuns: [], curveRuns: new Map(), cpuMicros: 0 };
  } catch (error) {
    await server?.close();
    await schema.drop();
    throw error;
  }
}

async function finish(setup: ModeSetup, options: HttpOverheadOptions): Promise<HttpModeResult> {
  const { schema, server } = setup;
  const load = mergeLoads(setup.runs);
  const log = schema.table('audit_log');
  const count = (where: string): Promise<number> => settledCount(schema, `SELECT count(*) AS n FROM ${log} ${where}`);
  const result: HttpModeResult = {
    mode: setup.mode,
    warmup: setup.warmup!,
    load,
    serial: mergeLoads(setup.serialRuns),
    curve: new Map([...setup.curveRuns].map(([connections, runs]) => [connections, mergeLoads(runs)])),
    cpuMsPerRequest: options.server === 'process' ? setup.cpuMicros / 1000 / load.ok : Number.NaN,
    intentRows: await count(`WHERE kind = 'intent'`),
    changeRows: await count(`WHERE kind = 'change'`),
    splitChanges: await count(
      `AS c WHERE c.kind = 'change' AND EXISTS (SELECT 1 FROM ${log} AS i WHERE i.kind = 'intent' AND i.request_id = c.request_id AND i.changes IS NULL)`,
    ),
    serverOutput: server.output(),
    problems: [],
  };
  const curveCutOff = setup.mode === 'naive' ? 0 : options.curveConnections.reduce((sum, connections) => sum + connections * options.rounds, 0);
  result.problems = checkRows(result, (1 + options.rounds) * options.connections + options.rounds + curveCutOff);
  return result;
}

/** Seeds `count` pending orders of the sample's customer `bob` (ids 1…count), outside the app. */
export async function seedOrders(schema: BenchSchema, count: number): Promise<void> {
  await schema.query(
    `INSERT INTO ${schema.table('orders')} (customer_id, description, total_cents)
     SELECT 'bob', 'Bench order ' || g, 1000 + g FROM generate_series(1, $1::int) AS g`,
    [count],
  );
  await schema.query(`ANALYZE ${schema.table('orders')}`);
}

/**
 * Every 2xx PATCH must have left exactly one row: an `order.updated` intent event with
 * the change (module on) or a change row (naive); none with the module disabled.
 * Requests cut off when a run stops (`cutOff`: at most one per connection per run) may
 * still have been handled by the server.
 */
function checkRows(result: HttpModeResult, cutOff: number): string[] {
  const runs = [result.warmup, result.load, result.serial, ...result.curve.values()];
  const ok = runs.reduce((sum, run) => sum + run.ok, 0);
  const answered = ok + runs.reduce((sum, run) => sum + run.non2xx, 0);
  const problems: string[] = [];
  const failed = answered - ok + runs.reduce((sum, run) => sum + run.errors, 0);
  if (failed > 0) problems.push(`${failed} requests failed (non-2xx or socket errors)`);
  const [rows, stray, strayName] =
    result.mode === 'module'
      ? [result.intentRows, result.changeRows, 'fallback change']
      : result.mode === 'naive'
        ? [result.changeRows, result.intentRows, 'intent']
        : [0, result.intentRows + result.changeRows, 'audit'];
  if (result.mode !== 'disabled') {
    if (rows < ok) problems.push(`only ${rows} audit rows for ${ok} 2xx responses: ${ok - rows} lost`);
    if (rows > answered + cutOff) problems.push(`${rows} audit rows for ${answered} answered requests: more than the ${cutOff} cut off`);
  }
  if (result.mode === 'module' && result.splitChanges > 0) {
    problems.push(
      `${result.splitChanges} requests were logged twice: an intent row without changes plus a fallback change row ` +
        `carrying them. These are requests whose client disconnected before the handler finished (autocannon cuts ` +
        `off in-flight requests when a run stops): the response's 'close' flushes the changes before the intent claims them.`,
    );
    if (result.splitChanges > cutOff) problems.push(`that is more than the ${cutOff} requests cut off: not only disconnected clients`);
  }
  const unexplained = stray - (result.mode === 'module' ? result.splitChanges : 0);
  if (unexplained > 0) problems.push(`${unexplained} unexpected ${strayName} rows`);
  return problems;
}

export function formatHttpOverhead(result: HttpOverheadResult): string[] {
  const { options } = result;
  const rows = result.modes.map((mode) => [
    LABELS[mode.mode],
    int(mode.load.reqPerSec),
    fixed(mode.load.p50, 2),
    fixed(mode.load.p99, 2),
    fixed(mode.cpuMsPerRequest, 2),
    int(mode.load.ok),
    int(mode.load.non2xx + mode.load.errors + mode.load.timeouts),
    `${int(mode.intentRows)} / ${int(mode.changeRows)}`,
  ]);
  const lines = [
    `HTTP overhead: PATCH /orders/:id of the sample app (@Audited 'order.updated'; load, change, save) on PostgreSQL`,
    `  autocannon: ${options.connections} connections, random order of ${int(options.orders)}, ${options.warmupSeconds} s warm-up + ${options.durationSeconds} s measured per configuration in ${options.rounds} rounds of alternating order; servers in ${options.server === 'process' ? 'child processes' : 'this process'}; latency of 2xx responses`,
    ...table(['configuration', 'req/s', 'p50 ms', 'p99 ms', 'server CPU ms/req', '2xx', 'failed', 'intent / change rows*'], rows),
    `  * audit rows after all runs, for ${result.modes.map((m) => `${int(m.warmup.ok + m.load.ok + m.serial.ok + [...m.curve.values()].reduce((sum, run) => sum + run.ok, 0))} 2xx (${LABELS[m.mode]})`).join(', ')}`,
    `  module / disabled: ${times(result.moduleRatio)} req/s (target ≥ ${HTTP_TARGETS.minRatio}×: ${verdict(result.moduleRatio >= HTTP_TARGETS.minRatio)}); p99 ${signedMs(result.moduleP99OverheadMs)}`,
    `  naive / disabled:  ${times(result.naiveRatio)} req/s; p99 ${signedMs(result.naiveP99OverheadMs)}`,
    `  one connection, ${options.serialSeconds} s per configuration in ${options.rounds} rounds (each request's own latency, no queueing):`,
    ...table(
      ['configuration', 'req/s', 'p50 ms', 'p99 ms'],
      result.modes.map((mode) => [LABELS[mode.mode], int(mode.serial.reqPerSec), fixed(mode.serial.p50, 2), fixed(mode.serial.p99, 2)]),
    ),
    `  module − disabled at one connection: p99 ${signedMs(result.moduleSerialP99OverheadMs)} (target < ${HTTP_TARGETS.maxSerialP99OverheadMs} ms: ${verdict(result.moduleSerialP99OverheadMs < HTTP_TARGETS.maxSerialP99OverheadMs)}); naive − disabled: p99 ${signedMs(result.naiveSerialP99OverheadMs)}`,
    `  scaling curve (module on / disabled by number of connections; ${options.curveConnections.join(' and ')} connections: ${options.curveSeconds} s per configuration in ${options.rounds} rounds):`,
    ...table(
      ['connections', 'disabled req/s', 'module req/s', 'ratio', 'disabled p99 ms', 'module p99 ms'],
      result.curve.map((point) => [
        int(point.connections),
        int(point.disabled.reqPerSec),
        int(point.module.reqPerSec),
        times(point.ratio),
        fixed(point.disabled.p99, 2),
        fixed(point.module.p99, 2),
      ]),
    ),
  ];
  for (const mode of result.modes) {
    for (const problem of mode.problems) lines.push(`  !! ${LABELS[mode.mode]}: ${problem}`);
    if (mode.serverOutput.length) {
      lines.push(`  !! ${LABELS[mode.mode]}: the server printed ${mode.serverOutput.length} lines, first ones:`);
      for (const line of mode.serverOutput.slice(0, 5)) lines.push(`     ${line.slice(0, 200)}`);
    }
  }
  return lines;
}
