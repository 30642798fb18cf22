import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { polled } from '../support/within.js';
import { databases, sharedDatabase, type TestDatabase } from '../support/test-database.js';
import { changesOf, CtrItem, CtrLine, startContractApp, type ContractApp } from './contract-app.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Starts the crash child on `db`; resolves with its URL once it listens. */
function startChild(db: TestDatabase): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', './bench/support/register.mjs', 'test/e2e/contract-crash-child.ts'], {
    cwd: ROOT,
    env: { ...process.env, CTR_DB: JSON.stringify({ kind: db.kind, options: db.options }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`child did not start in 30 s: ${err}`)), 30_000);
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /READY (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!.replace('[::1]', '127.0.0.1') });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
}

describe.each(databases())('contract: an app instance killed mid-request (SIGKILL), on %s', (kind) => {
  let db: TestDatabase | undefined;
  const apps: ContractApp[] = [];
  let child: ChildProcess | undefined;

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const app of apps.splice(0)) await app.close();
    await db?.drop();
    db = undefined;
  });

  it(
    'the committed changes of the cut units become events exactly once — the intent as unknown/Interrupted, the undecorated route’s as fallback — with two instances recovering',
    { timeout: 90_000 },
    async () => {
      db = await sharedDatabase(kind);
      // Two live instances that will recover the dead one's journal.
      apps.push(await startContractApp({ db, audit: { recoverAfter: 1000 } }));
      apps.push(await startContractApp({ db, audit: { recoverAfter: 1000 } }));
      const [a, b] = apps as [ContractApp, ContractApp];
      let url: string;
      ({ child, url } = await startChild(db));

      const send = (path: string, name: string) =>
        fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-user': 'ada', 'x-request-id': `crash-${name}` },
          body: JSON.stringify({ name }),
          signal: AbortSignal.timeout(60_000),
        }).catch((error: unknown) => error);
      const cut = [send('/ctr-crash/audited', 'crash-audited'), send('/ctr-crash/plain', 'crash-plain')];
      const items = a.dataSource.getRepository(CtrItem);
      await expect.poll(() => items.countBy([{ name: 'crash-audited' }, { name: 'crash-plain' }]), { timeout: 15_000, interval: 50 }).toBe(2);
      expect(await a.journal()).toBeGreaterThanOrEqual(2);
      child.kill('SIGKILL');
      for (const outcome of await Promise.all(cut)) expect(outcome).toBeInstanceOf(Error); // no answer, let alone a 2xx

      const rows = await polled(
        () => a.rows(),
        (all) => changesOf(all, 'CtrItem').length >= 2,
        30_000,
      );
      await polled(() => a.journal(), (n) => n === 0, 10_000);
      // Let a late second recovery show itself, if it would.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const final = await b.rows();
      expect(final.length).toBe(rows.length);
      const crashRows = final.filter((row) => changesOf([row], 'CtrItem').length > 0 || row.action.startsWith('ctr.crash'));
      expect(crashRows.map((row) => [row.action, row.kind, row.outcome]).sort()).toEqual([
        ['ctr.crash.audited', 'intent', 'unknown'],
        ['ctrItem.created', 'change', 'success'],
      ]);
      const intent = crashRows.find((row) => row.kind === 'intent')!;
      expect(intent.error).toMatchObject({ name: 'Interrupted' });
      expect(changesOf([intent], 'CtrItem').map((change) => (change.fields['name'] as { to: string }).to)).toEqual(['crash-audited']);
      expect([intent.actorType, intent.actorId, intent.source, intent.requestId, intent.route]).toEqual(['user', 'ada', 'http', 'crash-crash-audited', '/ctr-crash/audited']);
      const fallback = crashRows.find((row) => row.kind === 'change')!;
      expect(changesOf([fallback], 'CtrItem').map((change) => (change.fields['name'] as { to: string }).to)).toEqual(['crash-plain']);
      expect([fallback.actorType, fallback.actorId, fallback.requestId]).toEqual(['user', 'ada', 'crash-crash-plain']);
      expect(changesOf(final, 'CtrItem')).toHaveLength(2);
      expect(await b.journal()).toBe(0);
    },
  );

  it('a 7,500-row import cut after its commit: every row comes back once, in parts of the unknown intent', { timeout: 120_000 }, async () => {
    const ROWS = 7_500;
    db = await sharedDatabase(kind);
    apps.push(await startContractApp({ db, audit: { recoverAfter: 1000 } }));
    const [a] = apps as [ContractApp];
    let url: string;
    ({ child, url } = await startChild(db));
    const pending = fetch(`${url}/ctr-crash/bulk`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ batch: 'cut', count: ROWS }),
      signal: AbortSignal.timeout(90_000),
    }).catch((error: unknown) => error);
    const lines = a.dataSource.getRepository(CtrLine);
    await expect.poll(() => lines.countBy({ batch: 'cut' }), { timeout: 60_000, interval: 200 }).toBe(ROWS);
    child.kill('SIGKILL');
    expect(await pending).toBeInstanceOf(Error);

    await polled(() => a.journal(), (n) => n === 0, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const rows = await a.rows();
    const parts = rows.filter((row) => row.action === 'ctr.crash.bulk');
    expect(rows.filter((row) => row.kind === 'change')).toEqual([]);
    expect(parts.length).toBeGreaterThan(1);
    for (const part of parts) {
      expect([part.kind, part.outcome, part.error?.name]).toEqual(['intent', 'unknown', 'Interrupted']);
      expect((part.changes ?? []).length).toBeLessThanOrEqual(1000);
    }
    const ids = parts.flatMap((part) => (part.changes ?? []).map((change) => change.id));
    expect(ids).toHaveLength(ROWS);
    expect(new Set(ids).size).toBe(ROWS);
    expect(await a.journal()).toBe(0);
  });
});
