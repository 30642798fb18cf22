// The command line run in-process, as the e2e suites run most of their commands: `main()`
// with its output captured gives what the process gives, reports progress only to a
// terminal, and many runs of every command leave no connection, file, listener or exit
// code behind.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp } from '../app/create-test-app.js';
import { CapturedOutput, cli, cliDatabase, cliProcess, type CliRun } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/in-process';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);
const EVENTS = 6;
const ROUNDS = 5;

/**
 * What this process holds open: its file descriptors, the handles Node counts (sockets,
 * pipes, files; not timers, nor requests in flight, which come and go) and its listeners.
 */
function openedHere(): { fds: number; handles: string[]; listeners: Record<string, number> } {
  return {
    fds: readdirSync('/proc/self/fd').length,
    handles: process
      .getActiveResourcesInfo()
      .filter((type) => !/Req|Request|Timeout|Immediate|WriteWrap|ShutdownWrap/.test(type))
      .sort(),
    listeners: Object.fromEntries(process.eventNames().map((name) => [String(name), process.listenerCount(name)])),
  };
}

describe.each(databases())('the command line in-process on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let url: string[];
  let id: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-cli-in-process-'));
    ({ db, url } = await cliDatabase(kind, join(dir, 'audit.sqlite')));
    const t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
    try {
      for (let i = 0; i < EVENTS; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i}`, target: { type: 'order', id: String(i) } });
      await t.audit.checkpoint();
      id = (await t.rows())[2]!.id;
      writeFileSync(join(dir, 'proof.json'), JSON.stringify(await t.audit.prove(id)));
    } finally {
      await t.close();
    }
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives what the process gives', async () => {
    const [inProcess, child] = [await cli('export', ...url), await cliProcess('export', ...url)];
    expect(inProcess.stdout.trimEnd().split('\n')).toHaveLength(EVENTS);
    expect(inProcess).toEqual(child);
  });

  it('shows progress on standard error only when it is a terminal', async () => {
    for (const terminal of [false, true]) {
      const stdout = new CapturedOutput();
      const stderr = new CapturedOutput(terminal);
      expect(await main(['verify', ...url, '--public-key', VKEY], { stdout, stderr })).toBe(0);
      expect(stdout.text()).toBe(`OK: tree size ${EVENTS}, ${EVENTS} events and 1 checkpoint checked\n`);
      expect(stderr.text()).toBe(terminal ? `\rchecked ${EVENTS} of ${EVENTS} events\n` : '');
    }
    const stdout = new CapturedOutput();
    const stderr = new CapturedOutput(true);
    expect(await main(['export', ...url, '--out', join(dir, 'progress.jsonl')], { stdout, stderr })).toBe(0);
    expect(stdout.text()).toBe('');
    expect(stderr.text()).toBe(`\rexported ${EVENTS} events\nexported ${EVENTS} events to ${join(dir, 'progress.jsonl')}\n`);
  });

  it(`runs every command ${ROUNDS} times over and leaves nothing open`, async () => {
    const commands: Array<[string[], number]> = [
      [['verify', ...url, '--public-key', VKEY], 0],
      [['export', ...url], 0],
      [['export', ...url, '--format', 'csv', '--action', 'order.noted', '--out', join(dir, 'out.csv')], 0],
      [['checkpoints', ...url], 0],
      [['checkpoints', ...url, '--out', join(dir, 'checkpoints.txt')], 0],
      [['export', ...url, '--out', join(dir, 'all.jsonl')], 0],
      [['verify', '--events', join(dir, 'all.jsonl'), '--checkpoints', join(dir, 'checkpoints.txt'), '--public-key', VKEY], 0],
      [['prove', id, ...url], 0],
      [['verify-proof', join(dir, 'proof.json'), '--public-key', VKEY, ...url], 0],
      [['keygen', '--name', 'k'], 0],
      [['verify', ...url], 0],
      [['verify', ...url, '--public-key', 'not-a-key'], 2],
      [['export', ...url, '--outcome', 'maybe'], 2],
      [['export', '--url', 'postgres://nobody@127.0.0.1:1/none'], 2],
      [['verify', '--url', 'sqlite:/nonexistent/audit.sqlite', '--public-key', VKEY], 2],
    ];
    // A first run of each loads what the commands load once per process (drivers, modules).
    const first: CliRun[] = [];
    for (const [args, code] of commands) {
      const run = await cli(...args);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(code);
      first.push(run);
    }
    const exitCode = process.exitCode;
    // Sockets of earlier runs close a moment after their pool ends (as below): let them
    // close before counting, a bounded time, until 50 ms pass with nothing closed.
    let before = openedHere();
    for (let wait = 0; wait < 40; wait++) {
      await sleep(50);
      const now = openedHere();
      if (now.fds >= before.fds && now.handles.length >= before.handles.length) break;
      before = now;
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, [args, code]] of commands.entries()) {
        const run = await cli(...args);
        expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(code);
        if (args[0] !== 'keygen') expect(run, args.join(' ')).toEqual(first[i]);
      }
    }
    // Sockets close a moment after their pool ends: wait for it, a bounded time. (A file
    // the test runner has open for a moment may close meanwhile: fewer is fine.)
    let after = openedHere();
    for (let wait = 0; wait < 40 && (after.fds > before.fds || after.handles.length > before.handles.length); wait++) {
      await sleep(50);
      after = openedHere();
    }
    expect(after.fds).toBeLessThanOrEqual(before.fds);
    expect(after.handles).toEqual(before.handles);
    expect(after.listeners).toEqual(before.listeners);
    expect(process.exitCode).toBe(exitCode);
  }, 120_000);
});
