// The JSON columns of audit_log as stored text: a text the module does not write (a member
// given twice, a number JSON.parse reads as another) says something else to SQL than to
// JSON.parse, which the leaves are computed from. verify() and `npx nestjs-system-audit
// verify` report it, and the integrator does not sign it.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { verifierKey } from '../../lib/integrity/checkpoint-note.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { cli, cliDatabase, cliProblemBriefs, dropAppendOnlyGuards, problemBriefs } from '../support/integrity.js';
import { databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/stored-json';
const { privateKey } = generateKeyPairSync('ed25519');
const VKEY = verifierKey(ORIGIN, privateKey);

describe.each(databases())('stored JSON text of audit_log on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  let t: TestApp;
  let url: string[];
  let rows: AuditLogEntity[];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stored-json-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    ({ db, url } = await cliDatabase(kind, join(dir, `${randomUUID()}.sqlite`)));
    t = await createTestApp({ db, adapter: 'express', audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } } });
    for (let i = 0; i < 8; i++) await t.audit.log({ action: 'order.noted', reason: `note ${i + 1}`, context: { amount: 100, account: 9007199254740992, i } });
    await t.audit.checkpoint();
    rows = await t.dataSource.getRepository(AuditLogEntity).find({ order: { seq: 'ASC' } });
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await expectOk();
    await dropAppendOnlyGuards(t.dataSource);
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });
  const q = (name: string) => t.dataSource.driver.escape(name);
  const tbl = (name: string) => t.dataSource.getMetadata(name).tablePath.split('.').map(q).join('.');
  const p = (i: number) => (kind === 'postgres' ? `$${i}` : '?');
  const sql = (text: string, params: unknown[] = []) => t.dataSource.query(text, params);

  async function expectOk(): Promise<void> {
    const result = await t.audit.verify();
    expect(result.problems).toEqual([]);
    expect((await cli('verify', ...url, '--public-key', VKEY)).code).toBe(0);
  }

  /** What verify() and the CLI say after the tampering. */
  async function verdicts(): Promise<{ api: boolean; cli: number | null }> {
    const result = await t.audit.verify();
    const run = await cli('verify', ...url, '--public-key', VKEY);
    return { api: result.ok, cli: run.code };
  }

  /** The problems verify() and the CLI report, as `kind seq=… id=…`. */
  async function briefs(): Promise<{ api: string[]; cli: string[] }> {
    const names = new Map(rows.map((row) => [row.id, `#${row.seq}`]));
    const run = await cli('verify', ...url, '--public-key', VKEY);
    return { api: problemBriefs((await t.audit.verify()).problems, names), cli: cliProblemBriefs(run.stdout, names) };
  }

  const textOf = (column: string, path: string, seq: number): Promise<Array<{ v: unknown }>> =>
    kind === 'postgres'
      ? sql(`SELECT ${q(column)}::jsonb->>'${path}' AS v FROM ${tbl('AuditLogEntity')} WHERE ${q('seq')} = ${seq}`)
      : sql(`SELECT CAST(JSON_EXTRACT(${q(column)}, '$.${path}') AS ${kind === 'sqlite' ? 'TEXT' : 'CHAR'}) AS v FROM ${tbl('AuditLogEntity')} WHERE ${q('seq')} = ${seq}`);

  /** Inserts a row by hand, as the app's role (INSERT) can, with `context` as given; returns its id. */
  async function insertWithContext(context: string): Promise<string> {
    const id = randomUUID();
    const cols = ['id', 'occurred_at', 'action', 'outcome', 'kind', 'actor_type', 'actor_id', 'source', 'context'];
    await sql(
      `INSERT INTO ${tbl('AuditLogEntity')} (${cols.map(q).join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`,
      [id, kind === 'sqlite' ? '2026-01-01 00:00:00.000' : new Date(), 'order.refunded', 'success', 'event', 'user', 'mallory', 'manual', context],
    );
    return id;
  }

  it('a signed JSON number changed to another integer beyond double precision is reported modified', async () => {
    expect(await textOf('context', 'account', 1)).toEqual([{ v: '9007199254740992' }]);
    const proof = join(dir, `proof-${randomUUID()}.json`);
    writeFileSync(proof, JSON.stringify(await t.audit.prove(rows[0]!.id)));
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('context')} = ${p(1)} WHERE ${q('seq')} = 1`, ['{"amount":100,"account":9007199254740993,"i":0}']);
    // The database (and every SQL reader, report, SIEM) now holds another account number than the one signed.
    expect(await textOf('context', 'account', 1)).toEqual([{ v: '9007199254740993' }]);
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    expect(await briefs()).toEqual({ api: ['modified seq=1 id=#1'], cli: ['modified seq=1 id=#1'] });
    // The proof still holds, but not for the database's copy of the event.
    const run = await cli('verify-proof', proof, '--public-key', VKEY, ...url);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAILED: the database's copy of event .*9007199254740993/);
  });

  it.skipIf(kind === 'postgres')('a member given twice, the first (what SQL reads) forged, is reported modified', async () => {
    // PostgreSQL's ->> takes the last member, as JSON.parse does; MariaDB's and SQLite's JSON_EXTRACT the first.
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('context')} = ${p(1)} WHERE ${q('seq')} = 6`, ['{"amount":999999,"amount":100,"account":9007199254740992,"i":5}']);
    // JSON_EXTRACT / json_extract take the first member: the database now says 999999.
    expect(await textOf('context', 'amount', 6)).toEqual([{ v: '999999' }]);
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    expect(await briefs()).toEqual({ api: ['modified seq=6 id=#6'], cli: ['modified seq=6 id=#6'] });
  });

  it('the same value stored with other whitespace and member order is not a change', async () => {
    await sql(`UPDATE ${tbl('AuditLogEntity')} SET ${q('context')} = ${p(1)} WHERE ${q('seq')} = 3`, ['{ "i": 2,\n  "account": 9007199254740992, "amount": 100 }']);
    await expectOk();
  });

  it('a forged row inserted without seq that the integrator cannot hash (a number JSON cannot hold as a double) is reported inserted', async () => {
    const log = tbl('AuditLogEntity');
    const id = await insertWithContext('{"amount":1e400}');
    // The integrator passes (as every `sequenceEvery`): the row is never sequenced...
    await t.audit.checkpoint();
    const [row] = await sql(`SELECT ${q('seq')} AS s FROM ${log} WHERE ${q('id')} = ${p(1)}`, [id]);
    expect(row.s).toBeNull();
    // ...yet the app's own read API shows it as an event of the trail.
    const found = await t.audit.find({ actorId: 'mallory' });
    expect(found.items.map((e) => e.id)).toEqual([id]);
    expect(await verdicts()).toEqual({ api: false, cli: 1 });
    const result = await t.audit.verify();
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'inserted', id })]);
    expect(result.problems[0]!.seq).toBeUndefined();
    const run = await cli('verify', ...url, '--public-key', VKEY);
    expect(run.stdout).toContain(`inserted id=${id} `);
  });

  it('a row inserted without seq whose JSON text the module does not write is not sequenced, and is reported inserted', async () => {
    const id = await insertWithContext('{"amount":999999,"amount":100}');
    const backlog = await insertWithContext('{"amount":100}');
    await t.audit.checkpoint();
    const seqs = await t.dataSource.getRepository(AuditLogEntity).find({ where: { actorId: 'mallory' }, select: { id: true, seq: true } });
    // A row the module could have written is the integrator's backlog, and is sequenced; the other is not.
    expect(Object.fromEntries(seqs.map((row) => [row.id === id ? 'forged' : row.id === backlog ? 'backlog' : row.id, row.seq]))).toEqual({ forged: null, backlog: 9 });
    const result = await t.audit.verify();
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'inserted', id })]);
    expect((await cli('verify', ...url, '--public-key', VKEY)).code).toBe(1);
  });

  it('a row waiting to be sequenced is not a problem', async () => {
    await t.audit.log({ action: 'order.noted', reason: 'not sequenced yet', context: { amount: 1 } });
    await expectOk();
  });
});
