import 'reflect-metadata';
import { fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import { BenchAppModule, type BenchAppConfig } from './bench-app.module.js';

/** Memory (bytes) and CPU time used so far (µs, user + system) of the server process. */
export interface ProcessSample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  cpuMicros: number;
}

/** A running orders API, in this process or in a child process of its own. */
export interface BenchServer {
  url: string;
  /** The server process's memory and CPU time; with `gc`, after a full garbage collection (needs `--expose-gc`). */
  sample(gc?: boolean): Promise<ProcessSample>;
  /** What the server printed (Nest's warnings and errors, such as failed audit writes). */
  output(): string[];
  close(): Promise<void>;
}

/** Memory and CPU time of this process; with `gc` and `--expose-gc`, memory after two full collections. */
export function sampleProcess(gc = false): ProcessSample {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (gc && collect) {
    collect();
    collect();
  }
  const { rss, heapUsed, heapTotal, external } = process.memoryUsage();
  const { user, system } = process.cpuUsage();
  return { rss, heapUsed, heapTotal, external, cpuMicros: user + system };
}

/**
 * Boots the app in this process (the smoke test; no build needed). With `alongside`, other
 * bench apps run in the same process: each has its own container and data source, but
 * @nestjs/typeorm's process-wide name registry would warn about the repeated default
 * data source name, so only errors are printed.
 */
export async function startInProcessServer(config: BenchAppConfig, alongside = false): Promise<BenchServer> {
  const app = await NestFactory.create(BenchAppModule.forRoot(config), { logger: alongside ? ['error'] : ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sample: async (gc) => sampleProcess(gc),
    output: () => [],
    close: () => app.close(),
  };
}

type ChildMessage = { type: 'ready'; url: string } | { type: 'sample'; sample: ProcessSample };

const REGISTER = new URL('../support/register.mjs', import.meta.url).href;
const ENTRY = fileURLToPath(new URL('./bench-server.process.ts', import.meta.url));

/**
 * Boots the app in a child process, so the load generator and the server do not share
 * an event loop. The child runs the TypeScript through the SWC hooks and imports
 * `nestjs-system-audit` by name, i.e. the built package.
 */
export function startServerProcess(config: BenchAppConfig): Promise<BenchServer> {
  const child = fork(ENTRY, [JSON.stringify(config)], {
    execArgv: ['--import', REGISTER, '--expose-gc'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(line);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const next = <T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> =>
    new Promise((resolve, reject) => {
      const onMessage = (message: ChildMessage): void => {
        if (message.type !== type) return;
        child.off('message', onMessage);
        resolve(message as Extract<ChildMessage, { type: T }>);
      };
      child.on('message', onMessage);
      void exited.then((code) => {
        child.off('message', onMessage);
        reject(new Error(`bench server exited (code ${code}) before "${type}":\n${lines.slice(-20).join('\n')}`));
      });
    });

  return next('ready').then(({ url }) => ({
    url,
    sample: async (gc = false) => {
      const reply = next('sample');
      child.send({ type: 'sample', gc });
      return (await reply).sample;
    },
    output: () => [...lines],
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) child.send({ type: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  }));
}
