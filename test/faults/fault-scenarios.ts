import type { KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditCheckpoint } from '../../lib/index.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { KILLED_IN_BATCH, type FaultIntegratorStats } from './fault-integrity.controller.js';
import type { AppProcess } from './support/app-process.js';
import type { FaultDatabase } from './support/fault-database.js';
import { hostileMix } from './support/hostile-values.js';
import { checkIntegrity } from './support/integrity-check.js';
import { normalMix, type LoadClient, type LoadOptions } from './support/load-client.js';

/** `recoverAfter` of the app, in ms. */
export const RECOVER_AFTER = 3000;
/** Calls in flight under normal load. */
const CONCURRENCY = 16;
/** Hard bound of calls per load run. */
const MAX_REQUESTS = 20_000;
/** A call gets no answer after this long: `timeout`. */
const REQUEST_TIMEOUT = 20_000;

/** What a scenario works with; the runner sets it up and tears it down. */
export interface ScenarioContext {
  db: FaultDatabase;
  proxy: TcpProxy;
  /** The app instances (one, or `Scenario.instances`), started; the client spreads calls over those running. */
  apps: readonly AppProcess[];
  /** The first instance. */
  app: AppProcess;
  client: LoadClient;
  /** Aborts when the run is interrupted (Ctrl-C): end early. */
  signal: AbortSignal;
  /** A line for the report, under the scenario's result. */
  note(text: string): void;
  /** Fails the scenario for a reason other than A, B or D (e.g. the app did not exit). */
  fail(reason: string): void;
  /** A word for the scenario's result line (e.g. `tree=5120`). */
  detail(text: string): void;
  /** With `Scenario.integrity`: the app's origin and the public half of the key it signs with. */
  integrity?: { origin: string; publicKey: KeyObject };
}

/** One fault scenario. */
export interface Scenario {
  name: string;
  /** App instances on the same database. @default 1 */
  instances?: number;
  /**
   * Drives load and injects the fault. When it returns, the runner restores the proxy,
   * makes sure an app is running, waits (bounded) for `audit_journal` to empty, stops
   * the app and counts — unless `measureAfterRun` is set, when it counts first.
   */
  run(context: ScenarioContext): Promise<void>;
  /** Count right after `run`, before any app is restarted (what a graceful exit left). */
  measureAfterRun?: boolean;
  /**
   * The app runs with `integrity` on, signing with a key the runner makes for the run
   * (see `ScenarioContext.integrity`) and exposing the routes of fault-integrity.controller.ts.
   */
  integrity?: boolean;
  /** After recovery, every instance up and `audit_journal` empty, before they are stopped. */
  settled?(context: ScenarioContext): Promise<void>;
  /** After every instance is stopped and A, B, D are counted: checks read from the database. */
  stopped?(context: ScenarioContext): Promise<void>;
}

const load = (context: ScenarioContext, options: Partial<LoadOptions> & { durationMs: number; signal?: AbortSignal }) =>
  context.client.run({
    concurrency: CONCURRENCY,
    maxRequests: MAX_REQUESTS,
    timeoutMs: REQUEST_TIMEOUT,
    pick: normalMix,
    ...options,
    signal: options.signal ? AbortSignal.any([options.signal, context.signal]) : context.signal,
  });

/** Sleeps, unless the run is interrupted. */
const pause = (context: ScenarioContext, ms: number) => sleep(ms, undefined, { signal: context.signal }).catch(() => undefined);

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The window (a)'s five kills fall in. */
const KILL_WINDOW = 20_000;

/**
 * (a) `kill -9` at five random moments of a 20 s load, each time of an instance that is
 * up, which is restarted at once (in the background: the next kill does not wait for
 * it). Two instances share the database, so a dead instance's journal may be recovered
 * by the other one or by its own successor, whichever comes first, but only once.
 */
const killNine: Scenario = {
  name: 'kill-9',
  instances: 2,
  async run(context) {
    const stop = new AbortController();
    const running = load(context, { durationMs: 60_000, signal: stop.signal });
    const restarts: Array<Promise<void>> = [];
    const started = Date.now();
    const moments = Array.from({ length: 5 }, () => 500 + Math.random() * (KILL_WINDOW - 500)).sort((x, y) => x - y);
    try {
      for (const [index, moment] of moments.entries()) {
        await pause(context, moment - (Date.now() - started));
        // An instance that is up; if both are still restarting, wait for one (bounded).
        const waitUntil = Date.now() + 30_000;
        let up = context.apps.filter((app) => app.url !== undefined);
        while (up.length === 0 && Date.now() < waitUntil && !context.signal.aborted) {
          await pause(context, 100);
          up = context.apps.filter((app) => app.url !== undefined);
        }
        const victim = up[Math.floor(Math.random() * up.length)];
        if (!victim) throw new Error('no app instance came back up within 30 s of a kill');
        const calls = context.client.records.length;
        await victim.kill();
        const down = Date.now();
        const restart = victim.start().then(() =>
          context.note(`kill -9 #${index + 1} at ${seconds(down - started)}, instance ${victim.name}, after call ${calls}; back in ${seconds(Date.now() - down)}`),
        );
        restart.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
        restarts.push(restart);
      }
      await Promise.all(restarts);
      await pause(context, 2000);
    } finally {
      stop.abort();
      await Promise.allSettled(restarts);
      await running;
    }
  },
};

/**
 * (b) The database unreachable for 10 s in the middle of the load. Calls made from 1 s
 * after it is back must get 2xx again: an app that stays broken fails the scenario.
 */
const outage: Scenario = {
  name: 'db-outage',
  async run(context) {
    const stop = new AbortController();
    const running = load(context, { durationMs: 60_000, signal: stop.signal });
    let restored = Date.now();
    try {
      await pause(context, 3000);
      context.proxy.cut();
      await pause(context, 10_000);
      context.proxy.restore();
      restored = Date.now();
      await pause(context, 5000);
    } finally {
      context.proxy.restore();
      stop.abort();
      await running;
    }
    const after = context.client.records.filter((record) => record.startedAt >= restored + 1000);
    const ok = after.filter((record) => record.status !== undefined && record.status < 300).length;
    context.note(`calls from 1 s after the database was back: ${after.length}, 2xx: ${ok}`);
    if (after.length > 0 && ok === 0) context.fail('no call got a 2xx after the database was back');
  },
};

/** (c) 200 ms added to every packet, both ways, for 20 s. */
const latency: Scenario = {
  name: 'latency',
  async run(context) {
    const stop = new AbortController();
    const running = load(context, { durationMs: 60_000, signal: stop.signal });
    try {
      await pause(context, 2000);
      context.proxy.setLatency(200);
      await pause(context, 20_000);
      context.proxy.setLatency(0);
      await pause(context, 2000);
    } finally {
      context.proxy.setLatency(0);
      stop.abort();
      await running;
    }
  },
};

/** How long the app may take to exit after SIGTERM (its `shutdownTimeout` is 10 s by default). */
const EXIT_GRACE = 20_000;

/**
 * (d) SIGTERM under load: calls are in flight when it comes and keep coming for 2 s more
 * (as from a load balancer that has not yet taken the instance out); then the client
 * stops and the app must exit by itself, having stored every unit's events.
 */
const sigterm: Scenario = {
  name: 'sigterm',
  measureAfterRun: true,
  async run(context) {
    const stop = new AbortController();
    const running = load(context, { durationMs: 60_000, signal: stop.signal });
    let exit: Awaited<ReturnType<AppProcess['waitForExit']>>;
    let calls: number | undefined;
    let started = Date.now();
    try {
      await pause(context, 4000);
      calls = context.client.records.length;
      started = Date.now();
      context.app.sigterm();
      await pause(context, 2000);
    } finally {
      stop.abort();
      await running;
      exit = await context.app.waitForExit(Math.max(0, EXIT_GRACE - (Date.now() - started)));
    }
    context.note(
      `SIGTERM after call ${calls ?? '?'}: ${exit.graceful ? 'exited' : 'had not exited, killed'} ${seconds(Date.now() - started)} later ` +
        `(code ${exit.code}, signal ${exit.signal})`,
    );
    if (!exit.graceful) context.fail(`the app did not exit within ${seconds(EXIT_GRACE)} of SIGTERM`);
    const left = await context.db.journalCount();
    context.note(`audit_journal rows left by the exit: ${left ?? 'no table'}`);
  },
};

/**
 * (e) Hostile values in the reason, the actor's display name, the target id and the changed
 * fields, beside normal load. The app's own columns can hold every value sent (see
 * hostile-values.ts), so a hostile call that gets no 2xx is one the audit trail broke:
 * that fails the scenario too.
 */
const hostile: Scenario = {
  name: 'hostile-values',
  async run(context) {
    const hostileCalls = load(context, {
      durationMs: 15_000,
      concurrency: 4,
      maxRequests: 32,
      timeoutMs: 30_000,
      pick: hostileMix(context.db.kind),
    });
    const normal = load(context, { durationMs: 10_000, concurrency: 12 });
    await Promise.all([hostileCalls, normal]);
    const calls = context.client.records.filter((record) => record.action === 'item.hostile');
    const failed = calls.filter((record) => record.status === undefined || record.status >= 300);
    context.note(`hostile calls: ${calls.length}, 2xx: ${calls.length - failed.length}`);
    for (const record of failed.slice(0, 4)) context.note(`  ${record.status ?? record.error} ${record.operation}`);
    if (failed.length > 0) context.fail(`${failed.length} of ${calls.length} hostile calls got no 2xx, though the app's own write can store their values`);
  },
};

/** A JSON call to one app instance's URL, bounded in time. */
async function call<T>(url: string, method: 'GET' | 'POST', path: string, timeoutMs = 2000): Promise<T> {
  const response = await fetch(`${url}${path}`, { method, signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** `GET /integrity/stats` of every instance that is up (an instance that does not answer is left out). */
async function integratorStats(context: ScenarioContext): Promise<Array<{ app: AppProcess; stats: FaultIntegratorStats }>> {
  const up = context.apps.filter((app) => app.url !== undefined);
  const answers = await Promise.all(
    up.map((app) =>
      call<FaultIntegratorStats>(app.url!, 'GET', '/integrity/stats').then(
        (stats) => ({ app, stats }),
        () => undefined,
      ),
    ),
  );
  return answers.filter((answer) => answer !== undefined);
}

const describeStats = (stats: ReadonlyArray<{ app: AppProcess; stats: FaultIntegratorStats }>, now: number) =>
  stats
    .map(({ app, stats: s }) => `${app.name}: ${s.batches} batches/${s.sequenced} events${s.lastBatchAt ? `, last ${now - s.lastBatchAt} ms ago` : ''}`)
    .join('; ');

/** The load of integrity-kill-9, and when its two kills come. */
const INTEGRITY_LOAD_MS = 30_000;
const INTEGRITY_KILLS = [8_000, 15_000] as const;
/** How long a killed instance stays down before it is restarted. */
const INTEGRITY_DOWN_MS = 3000;
/** The final `checkpoint()` of each run, for `stopped`. */
const finalCheckpoints = new WeakMap<ScenarioContext, AuditCheckpoint>();

/**
 * `kill -9` of the instance doing the integrator's work: the one whose last batch is the
 * latest. `inBatch`: that instance is armed to SIGKILL itself inside its next batch's
 * transaction (after its seq update, before its tree nodes, lock held); if no batch comes
 * within 3 s the runner kills it. Otherwise the runner watches every instance's stats and
 * kills the first one seen to have just committed a batch (the busiest, likely). The instance is restarted
 * after `INTEGRITY_DOWN_MS`, in the background; returns that restart.
 */
async function killIntegrator(context: ScenarioContext, started: number, number: number, inBatch: boolean): Promise<{ restart: Promise<void> }> {
  const before = await integratorStats(context);
  const now = Date.now();
  const latest = [...before].sort((x, y) => y.stats.lastBatchAt - x.stats.lastBatchAt)[0];
  let victim = latest?.app;
  let how: string;
  if (inBatch && victim) {
    await call(victim.url!, 'POST', '/integrity/kill-in-batch');
    const exit = await victim.waitForExit(3000);
    const line = victim
      .tail(50)
      .split('\n')
      .find((text) => text.includes(KILLED_IN_BATCH));
    how = exit.graceful ? `${exit.signal} inside a batch's transaction (${line?.trim() ?? 'no line printed'})` : 'had no batch within 3 s: kill -9 by the runner';
  } else {
    // Poll until an instance's lastBatchAt moves: it has just committed a batch and is the integrator now.
    const last = new Map(before.map(({ app, stats }) => [app, stats.lastBatchAt]));
    const deadline = Date.now() + 3000;
    let fresh: AppProcess | undefined;
    while (!fresh && Date.now() < deadline && !context.signal.aborted) {
      await pause(context, 15);
      for (const { app, stats } of await integratorStats(context)) {
        if (stats.lastBatchAt > (last.get(app) ?? 0)) fresh = app;
      }
    }
    victim = fresh ?? victim;
    if (!victim) throw new Error('no app instance answered GET /integrity/stats');
    await victim.kill();
    how = fresh ? 'kill -9 by the runner right after it committed a batch' : 'kill -9 by the runner (no new batch seen within 3 s)';
  }
  if (!victim) throw new Error('no app instance answered GET /integrity/stats');
  const down = Date.now();
  context.note(`kill #${number} at ${seconds(down - started)}, instance ${victim.name}: ${how}`);
  context.note(`  integrators just before: ${describeStats(before, now)}`);
  const restart = pause(context, INTEGRITY_DOWN_MS)
    .then(() => victim.start())
    .then(() => context.note(`  instance ${victim.name} back ${seconds(Date.now() - down)} after kill #${number}`));
  restart.catch(() => undefined); // awaited by the caller; this only keeps an early failure from being "unhandled"
  return { restart };
}

/**
 * (f) Three instances with `integrity` on (seq, Merkle tree and signed checkpoints, batches
 * every 100 ms under the integrator lock) and 30 s of load. At 8 s the instance doing the
 * integrator's work SIGKILLs itself inside a batch's transaction; at 15 s the runner
 * `kill -9`s the one that has just committed a batch; each comes back 3 s later, the
 * other two keep taking the load. Then, after recovery, one instance's `checkpoint()`,
 * and the tables checked directly (support/integrity-check.ts): one gapless seq 1..N,
 * every leaf and node right, every checkpoint signed over the right root.
 */
const integrityKillNine: Scenario = {
  name: 'integrity-kill-9',
  instances: 3,
  integrity: true,
  async run(context) {
    const stop = new AbortController();
    const running = load(context, { durationMs: INTEGRITY_LOAD_MS, signal: stop.signal });
    const restarts: Array<Promise<void>> = [];
    const started = Date.now();
    try {
      for (const [index, moment] of INTEGRITY_KILLS.entries()) {
        await pause(context, moment - (Date.now() - started));
        restarts.push((await killIntegrator(context, started, index + 1, index === 0)).restart);
      }
      await Promise.all(restarts);
      await pause(context, INTEGRITY_LOAD_MS - (Date.now() - started));
    } finally {
      stop.abort();
      await Promise.allSettled(restarts);
      await running;
    }
    const stats = await integratorStats(context);
    context.note(`integrator after the load (since each instance's last start): ${describeStats(stats, Date.now())}`);
  },
  async settled(context) {
    const app = context.apps.find((candidate) => candidate.url !== undefined);
    if (!app) throw new Error('no app instance is up to ask for checkpoint()');
    const checkpoint = await call<AuditCheckpoint>(app.url!, 'POST', '/integrity/checkpoint', 60_000);
    finalCheckpoints.set(context, checkpoint);
    context.note(`checkpoint() of instance ${app.name}: tree size ${checkpoint.treeSize}, root ${checkpoint.rootHash}`);
  },
  async stopped(context) {
    if (!context.integrity) throw new Error('integrity-kill-9 runs without a signing key');
    const checkpoint = finalCheckpoints.get(context);
    const result = await checkIntegrity(context.db, { ...context.integrity, ...(checkpoint ? { checkpoint } : {}) });
    context.detail(`integrity: events=${result.events} tree=${result.treeSize} checkpoints=${result.checkpoints} problems=${result.problemCount}`);
    for (const problem of result.problems) context.fail(`integrity: ${problem}`);
    if (!checkpoint) context.fail('integrity: no final checkpoint() to check');
  },
};

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [killNine, outage, latency, sigterm, hostile, integrityKillNine];
