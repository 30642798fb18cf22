import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FaultAppConfig } from '../fault-app.module.js';
import { faultAppEnv } from '../fault-app.module.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const REGISTER = fileURLToPath(new URL('../../../bench/support/register.mjs', import.meta.url));
const ENTRY = fileURLToPath(new URL('../fault-app.ts', import.meta.url));
/** Room for a megabyte actor display in the `x-actor` header. */
const MAX_HEADER_SIZE = 4 * 1024 * 1024;
/** Lines of output kept per instance: the first ones and the last ones. */
const FIRST_LINES = 2000;
const KEPT_LINES = 6000;

/** Every app process a runner started and has not seen exit, for clean-up on any way out. */
const live = new Set<ChildProcess>();

/** SIGKILLs every app process still running (by the pids this runner started). */
export function killAllAppProcesses(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** How an app process ended. */
export interface AppExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The fault app as a child process (one at a time), restartable. Output of every
 * incarnation is kept, labelled, to print when a scenario fails.
 */
export class AppProcess {
  private child?: ChildProcess;
  private exited?: Promise<AppExit>;
  private incarnation = 0;
  private readonly lines: string[] = [];
  /** The app's base URL while it is up; `undefined` between a kill and the next READY. */
  url: string | undefined;

  /** `name` tells instances apart in the output (`a`, `b`, …). */
  constructor(
    private readonly config: FaultAppConfig,
    readonly name = 'a',
  ) {}

  /** Starts the app and waits (up to `timeoutMs`) for `READY <url>`. */
  async start(timeoutMs = 30_000): Promise<string> {
    if (this.running) throw new Error('fault app: already running');
    const label = `${this.name}#${++this.incarnation}`;
    const child = spawn(process.execPath, [`--max-http-header-size=${MAX_HEADER_SIZE}`, '--import', REGISTER, ENTRY], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...faultAppEnv(this.config) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    live.add(child);
    this.exited = new Promise<AppExit>((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.url = undefined;
        this.keep(label, `exited (code ${code}, signal ${signal})`);
        resolve({ code, signal });
      }),
    );
    child.stdin!.on('error', () => undefined);
    let ready: ((url: string) => void) | undefined;
    const readyUrl = new Promise<string>((resolve) => (ready = resolve));
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^READY (\S+)$/.exec(line.trim());
        if (match) ready?.(match[1]!);
        else this.keep(label, line);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) this.keep(label, line);
    });
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      readyUrl.then((url) => ({ url })),
      this.exited.then((exit) => ({ exit })),
      new Promise<{ timeout: true }>((resolve) => (timer = setTimeout(() => resolve({ timeout: true }), timeoutMs))),
    ]);
    clearTimeout(timer);
    if ('url' in outcome) {
      this.url = outcome.url;
      return outcome.url;
    }
    if ('timeout' in outcome) {
      await this.kill();
      throw new Error(`fault app ${label} not ready after ${timeoutMs} ms`);
    }
    throw new Error(`fault app ${label} exited before READY (code ${outcome.exit.code}, signal ${outcome.exit.signal})`);
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** `kill -9`, and waits for the exit. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.url = undefined;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** Sends SIGTERM (a graceful stop: the app's shutdown hooks run); see `waitForExit()`. */
  sigterm(): void {
    if (this.running) this.child!.kill('SIGTERM');
  }

  /**
   * Waits up to `graceMs` for the app to exit. Returns how it ended and whether it ended by
   * itself; past `graceMs` it is killed (`kill -9`) and `graceful` is `false`.
   */
  async waitForExit(graceMs: number): Promise<AppExit & { graceful: boolean }> {
    if (!this.exited) return { code: null, signal: null, graceful: true };
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      this.exited,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), graceMs))),
    ]);
    clearTimeout(timer);
    if (exit) return { ...exit, graceful: true };
    await this.kill();
    return { ...(await this.exited), graceful: false };
  }

  /** SIGTERM, then `waitForExit(graceMs)`. */
  terminate(graceMs: number): Promise<AppExit & { graceful: boolean }> {
    this.sigterm();
    return this.waitForExit(graceMs);
  }

  /** The last `count` lines the app processes printed, labelled by incarnation. */
  tail(count = KEPT_LINES): string {
    return this.lines.slice(-count).join('\n');
  }

  private keep(label: string, line: string): void {
    if (!line.trim()) return;
    this.lines.push(`  [app ${label}] ${line.length > 400 ? `${line.slice(0, 400)}…` : line}`);
    if (this.lines.length > KEPT_LINES) {
      // Keep how it started and how it ended; drop from the middle.
      const marker = /^ {2}… (\d+) lines left out …$/.exec(this.lines[FIRST_LINES] ?? '');
      // Without a marker yet: two lines make room for one; with one: the marker and one line.
      const dropped = marker ? Number(marker[1]) + 1 : 2;
      this.lines.splice(FIRST_LINES, 2, `  … ${dropped} lines left out …`);
    }
  }
}
