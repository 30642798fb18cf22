import { setTimeout as sleep } from 'node:timers/promises';
import type { TcpProxy } from '../support/tcp-proxy.js';
import type { AppProcess } from './support/app-process.js';
import type { FaultDatabase } from './support/fault-database.js';
import { hostileMix } from './support/hostile-values.js';
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

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [killNine, outage, latency, sigterm, hostile];
