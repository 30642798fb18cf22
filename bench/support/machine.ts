import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { postgresVersion } from './postgres.js';

/** What the numbers were measured on: CPUs, memory, kernel, Node and PostgreSQL versions. */
export async function describeMachine(): Promise<string[]> {
  let cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {
    // not Linux: keep os.cpus()
  }
  const postgres = await postgresVersion().catch((error: unknown) => `PostgreSQL unreachable (${String(error)})`);
  const [load] = os.loadavg();
  const cpus = os.availableParallelism();
  return [
    `load average at start: ${os.loadavg().map((value) => value.toFixed(2)).join(', ')} (1, 5, 15 min)` +
      (load! > cpus / 2 ? `\n!! the machine is busy (load ${load!.toFixed(2)} on ${cpus} CPUs): expect low, noisy numbers` : ''),
    `machine: ${cpus} CPUs (${cpu.trim()}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}`,
    `runtime: Node ${process.version}, ${postgres} on ${process.env['PGHOST'] ?? '127.0.0.1'}:${process.env['PGPORT'] ?? 5432}`,
  ];
}

/** The commit the package was built from, and whether lib/ had uncommitted changes. */
export function describeBuild(): string {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'lib') !== '';
    return `package: nestjs-system-audit built from ${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in lib/' : ''} (dist/, imported by name)`;
  } catch {
    return 'package: nestjs-system-audit (dist/, imported by name)';
  }
}
