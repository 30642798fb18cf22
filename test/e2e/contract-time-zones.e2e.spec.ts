import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { databases, sharedDatabase, type TestDatabase } from '../support/test-database.js';
import { startContractApp, type ContractApp } from './contract-app.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Starts the time zone child in `tz` on `db`; resolves with its URL and its zone's offset. */
function startChild(db: TestDatabase, tz: string, options: object): Promise<{ child: ChildProcess; url: string; offset: number }> {
  const child = spawn(process.execPath, ['--import', './bench/support/register.mjs', 'test/e2e/contract-tz-child.ts'], {
    cwd: ROOT,
    env: { ...process.env, TZ: tz, CTR_DB: JSON.stringify({ kind: db.kind, options }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`child did not start in 30 s: ${err}`)), 30_000);
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /READY (\S+) (-?\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!.replace('[::1]', '127.0.0.1'), offset: Number(match[2]) });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
}

/** `occurred_at` of each event as the database stores it, as `YYYY-MM-DDTHH:MM:SS.mmm`. */
async function storedTimes(t: ContractApp, db: TestDatabase): Promise<Map<string, string>> {
  let rows: Array<{ id: string; t: string | number }>;
  if (db.kind === 'postgres') {
    const schema = (db.options as { schema: string }).schema;
    rows = await t.dataSource.query(`SELECT id, to_char(occurred_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS t FROM "${schema}".audit_log`);
  } else if (db.kind === 'mariadb') {
    rows = await t.dataSource.query(`SELECT id, DATE_FORMAT(occurred_at, '%Y-%m-%dT%H:%i:%s.%f') AS t FROM audit_log`);
  } else {
    rows = await t.dataSource.query('SELECT id, occurred_at AS t FROM audit_log');
  }
  return new Map(
    rows.map((row) => [
      String(row.id).toLowerCase(),
      typeof row.t === 'number' ? new Date(row.t).toISOString().slice(0, 23) : String(row.t).replace(' ', 'T').replace(/Z$/, '').slice(0, 23),
    ]),
  );
}

describe.each(databases())('contract: occurred_at is one instant whatever the process’s and the session’s zone, on %s', (kind) => {
  let db: TestDatabase | undefined;
  let t: ContractApp | undefined;
  const children: ChildProcess[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    await t?.close();
    await db?.drop();
    t = undefined;
    db = undefined;
  });

  it('events written alternately by a UTC+14 and a UTC−3:30 process (PostgreSQL sessions in yet other zones): each within its request’s real time, stored as UTC, found in order', { timeout: 90_000 }, async () => {
    db = await sharedDatabase(kind);
    t = await startContractApp({ db });
    const session = (zone: string) =>
      kind === 'postgres' ? { ...db!.options, extra: { ...(db!.options as { extra?: object }).extra, options: `-c timezone=${zone}` } } : db!.options;
    const east = await startChild(db, 'Pacific/Kiritimati', session('Pacific/Chatham'));
    const west = await startChild(db, 'America/St_Johns', session('America/Adak'));
    children.push(east.child, west.child);
    expect([east.offset, west.offset]).toEqual([-840, expect.any(Number)]);
    expect(west.offset === 210 || west.offset === 150).toBe(true);

    const sent: Array<{ name: string; before: number; after: number }> = [];
    for (let n = 0; n < 8; n++) {
      const child = n % 2 === 0 ? east : west;
      const name = `tz-${n}`;
      const before = Date.now();
      const response = await fetch(`${child.url}/ctr-tz`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
        signal: AbortSignal.timeout(15_000),
      });
      expect(response.status).toBe(201);
      await response.arrayBuffer();
      sent.push({ name, before, after: Date.now() });
      await new Promise((resolve) => setTimeout(resolve, 15));
    }

    const rows = (await t.rows()).filter((row) => row.action === 'ctr.tz.written');
    expect(rows).toHaveLength(sent.length);
    const stored = await storedTimes(t, db);
    const nameOf = (row: (typeof rows)[number]) => ((row.changes ?? [])[0]!.fields['name'] as { to: string }).to;
    for (const row of rows) {
      const request = sent.find((each) => each.name === nameOf(row))!;
      expect(row.occurredAt.getTime()).toBeGreaterThanOrEqual(request.before);
      expect(row.occurredAt.getTime()).toBeLessThanOrEqual(request.after);
      // The column holds the UTC wall time, for any other reader of the table.
      expect(stored.get(row.id.toLowerCase())).toBe(row.occurredAt.toISOString().slice(0, 23));
    }

    // Newest first, across both writers; and a window by UTC instants.
    const page = await t.audit.find({ action: 'ctr.tz.written', limit: 100 });
    expect(page.items.map((event) => ((event.changes ?? [])[0]!.fields['name'] as { to: string }).to)).toEqual(sent.map((each) => each.name).reverse());
    const middle = sent[4]!;
    const window = await t.audit.find({ action: 'ctr.tz.written', from: new Date(middle.before), limit: 100 });
    expect(window.items.map((event) => ((event.changes ?? [])[0]!.fields['name'] as { to: string }).to).sort()).toEqual(['tz-4', 'tz-5', 'tz-6', 'tz-7']);
  });
});
