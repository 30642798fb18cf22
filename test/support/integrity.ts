import { execFile } from 'node:child_process';
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

/** Runs `npx nestjs-system-audit …` from its TypeScript source, in a child process. */
export function cli(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', './bench/support/register.mjs', 'test/support/run-cli.mjs', ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) =>
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
