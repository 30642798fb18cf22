import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataSource } from 'typeorm';
import { appendOnlyStatements } from '../../lib/storage/append-only.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** What a run of the command line tool printed, and its exit code. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The newest modification time of the files below `dir`. */
function newest(dir: string): number {
  let time = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    time = Math.max(time, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return time;
}

let command: string[] | undefined;

/**
 * How to start the command line: the package's own bin over the build (as `npx` runs it),
 * when `dist/` is at least as new as every source file (CI builds before it tests);
 * otherwise from the TypeScript sources, which takes longer to start.
 */
function cliCommand(): string[] {
  if (command) return command;
  const built = join(ROOT, 'dist/esm/cli/main.js');
  const fresh = existsSync(built) && statSync(built).mtimeMs >= newest(join(ROOT, 'lib'));
  command = fresh ? ['bin/nestjs-system-audit.mjs'] : ['--import', './bench/support/register.mjs', 'test/support/run-cli.mjs'];
  return command;
}

/** Runs `npx nestjs-system-audit …` in a child process. */
export function cli(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliCommand(), ...args], { cwd: ROOT, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

/** What a database administrator does before tampering by hand: drops the append-only triggers. */
export async function dropAppendOnlyGuards(dataSource: DataSource): Promise<void> {
  const runner = dataSource.createQueryRunner();
  try {
    for (const sql of appendOnlyStatements(runner).drop) await runner.query(sql);
  } finally {
    await runner.release();
  }
}
