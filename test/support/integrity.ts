import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { DataSource } from 'typeorm';
import { main } from '../../lib/cli/main.js';
import { appendOnlyStatements } from '../../lib/storage/append-only.js';
import { MARIADB, POSTGRES } from './database-probe.js';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './test-database.js';

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

/** Runs `npx nestjs-system-audit …` in a child process, as a user does. */
export function cliProcess(...args: string[]): Promise<CliRun> {
  return cliProcessWith({}, ...args);
}

/** The same, with `node` options before the command line's own (e.g. `--require` of a preload) and extra environment. */
export function cliProcessWith(options: { node?: string[]; env?: Record<string, string> }, ...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    const env = { ...process.env, ...options.env };
    execFile(process.execPath, [...(options.node ?? []), ...cliCommand(), ...args], { cwd: ROOT, env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

/** A stream that keeps what is written to it; `isTTY` as a terminal's. */
export class CapturedOutput extends Writable {
  private readonly chunks: Buffer[] = [];

  constructor(readonly isTTY = false) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    done();
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * Runs `nestjs-system-audit …` in this process (the command line's `main()`, as the bin
 * runs it) with its output captured: what {@link cliProcess} gives, without starting a
 * Node process that loads TypeORM and a driver each time. An error the command line does
 * not handle fails the test (a process would exit 1 with its stack).
 */
export async function cli(...args: string[]): Promise<CliRun> {
  const stdout = new CapturedOutput();
  const stderr = new CapturedOutput();
  const code = await main(args, { stdout, stderr });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
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

/**
 * A database for a test that also runs the command line against it: a SQLite file at
 * `sqliteFile`, or a fresh PostgreSQL schema or MariaDB database; with the `--url` (and
 * `--schema`) arguments that name it to the command line.
 */
export async function cliDatabase(kind: DatabaseKind, sqliteFile: string): Promise<{ db: TestDatabase; url: string[] }> {
  if (kind === 'sqlite') {
    return { db: { kind, options: { type: 'better-sqlite3', database: sqliteFile }, drop: async () => undefined }, url: ['--url', `sqlite:${sqliteFile}`] };
  }
  const db = await createTestDatabase(kind);
  const url =
    kind === 'postgres'
      ? ['--url', `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`, '--schema', (db.options as { schema: string }).schema]
      : ['--url', `mariadb://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${(db.options as { database: string }).database}`];
  return { db, url };
}

/** What {@link problemBriefs} reads of a problem. */
interface BriefProblem {
  kind: string;
  seq?: number | undefined;
  id?: string | undefined;
  treeSize?: number | undefined;
}

/**
 * `kind seq=… treeSize=…` of each problem of `verify()`, as tests compare them; with
 * `names`, also `id=…`, an event's id replaced by its name in the map where it has one.
 */
export function problemBriefs(problems: readonly BriefProblem[], names?: ReadonlyMap<string, string>): string[] {
  return problems.map((p) => brief(p.kind, p.seq, p.id, p.treeSize, names));
}

/** The same from the output lines of the CLI's `verify` (all but its summary line). */
export function cliProblemBriefs(stdout: string, names?: ReadonlyMap<string, string>): string[] {
  return stdout
    .trimEnd()
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const number = (pattern: RegExp): number | undefined => {
        const found = pattern.exec(line)?.[1];
        return found === undefined ? undefined : Number(found);
      };
      return brief(line.split(' ')[0]!, number(/\bseq=(\d+)/), /\bid=(\S+)/.exec(line)?.[1], number(/\btreeSize=(\d+)/), names);
    });
}

function brief(kind: string, seq: number | undefined, id: string | undefined, treeSize: number | undefined, names: ReadonlyMap<string, string> | undefined): string {
  return [kind, seq !== undefined ? `seq=${seq}` : '', names && id !== undefined ? `id=${names.get(id) ?? id}` : '', treeSize !== undefined ? `treeSize=${treeSize}` : '']
    .filter(Boolean)
    .join(' ');
}
