// Hostile tests of verify() and the integrator: tampering verify misses, and an
// application statement that stops the integrator.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLogEntity } from '../../lib/index.js';
import { appendOnlyStatements } from '../../lib/storage/append-only.js';
import { escapedTable } from '../../lib/storage/sql.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ORIGIN = 'audit.example.test/hostile-verify';
const { privateKey } = generateKeyPairSync('ed25519');

const kinds = (result: { problems: Array<{ kind: string; seq?: number; id?: string }> }) => result.problems.map(({ kind, seq, id }) => ({ kind, seq, id }));

/** Events stored the way the writer stores them, seq NULL (the integrator sequences them in id order). */
async function storeEvents(t: TestApp, count: number): Promise<void> {
  const repository = t.dataSource.getRepository(AuditLogEntity);
  const base = Date.parse('2025-12-01T10:00:00.000Z');
  for (let from = 0; from < count; from += 200) {
    const rows = [];
    for (let i = from; i < Math.min(count, from + 200); i++) {
      rows.push({ id: randomUUID(), occurredAt: new Date(base + i), action: 'order.noted', outcome: 'success', kind: 'intent', actorType: 'user', actorId: '7', source: 'http', reason: `note ${i + 1}`, seq: null });
    }
    await repository.insert(rows as never);
  }
}

describe.each(databases())('verify and the integrator, attacked, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeEach(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({
      db,
      adapter: 'express',
      audit: { integrity: { signingKey: privateKey, origin: ORIGIN, sequenceEvery: 60_000, checkpointEvery: { events: 1_000_000 } } },
    });
  });
  afterEach(async () => {
    await t?.close();
    await db?.drop();
  });

  const q = (name: string) => t.dataSource.driver.escape(name);
  const log = () => escapedTable(t.dataSource, t.dataSource.getMetadata(AuditLogEntity));
  /** A forged event, inserted by hand with the given seq; returns its id. */
  const forge = async (occurredAt: Date, seq: number): Promise<string> => {
    const id = randomUUID();
    await t.dataSource.getRepository(AuditLogEntity).insert({ id, occurredAt, action: 'order.refunded', outcome: 'success', kind: 'intent', actorType: 'user', actorId: '7', source: 'http', reason: 'forged', seq } as never);
    return id;
  };

  it('reports a forged event given the seq of another one, also where the seq falls on the last row of a page (2,000 rows)', async () => {
    await storeEvents(t, 2_001);
    await t.audit.checkpoint();
    // The administrator drops the guards and the unique index on seq, and forges an event at seq 2000.
    const runner = t.dataSource.createQueryRunner();
    try {
      for (const sql of appendOnlyStatements(runner).drop) await runner.query(sql);
      const table = t.dataSource.getMetadata(AuditLogEntity).tablePath;
      await runner.dropIndex(table, 'idx_audit_log_seq');
      // A plain index again, so the events are still read in index order.
      await runner.query(`CREATE INDEX ${q('idx_forged_seq')} ON ${log()} (${q('seq')})`);
    } finally {
      await runner.release();
    }
    await forge(new Date('2025-12-01T10:00:01.999Z'), 2_000);

    // The same forgery at seq 1999 (inside a page) is found; at 2000 it is never read.
    const result = await t.audit.verify();
    expect(result.ok, JSON.stringify(result.problems)).toBe(false);
    expect(result.problems.map((p) => p.seq)).toContain(2_000);
  });

  it('an application statement setting a NULL seq to the next position stops the integrator, loudly, until an administrator resolves it', async () => {
    await storeEvents(t, 3);
    await t.audit.checkpoint();
    await storeEvents(t, 2);
    // The guard lets any NULL seq be set (the application's role has UPDATE (seq)): a bug takes the next position.
    const [victim] = (await t.dataSource.query(`SELECT ${q('id')} AS id FROM ${log()} WHERE ${q('seq')} IS NULL ORDER BY ${q('id')} DESC`)) as Array<{ id: string }>;
    await t.dataSource.query(`UPDATE ${log()} SET ${q('seq')} = 4 WHERE ${q('id')} = '${victim!.id}'`);
    await storeEvents(t, 1);
    // Not taken into the tree as found: checkpoint() names the event and its seq, and nothing more is signed.
    await expect(t.audit.checkpoint()).rejects.toThrow(`event ${victim!.id} has seq 4, which the integrator did not give it (the tree has 3 leaves)`);
    expect(kinds(await t.audit.verify())).toEqual([{ kind: 'inserted', seq: 4, id: victim!.id }]);

    // The administrator sets the seq back to NULL (the guard allows no other way back): sequencing goes on.
    const runner = t.dataSource.createQueryRunner();
    try {
      const guards = appendOnlyStatements(runner);
      for (const sql of guards.drop) await runner.query(sql);
      await runner.query(`UPDATE ${log()} SET ${q('seq')} = NULL WHERE ${q('id')} = '${victim!.id}'`);
      for (const sql of guards.create) await runner.query(sql);
    } finally {
      await runner.release();
    }
    const checkpoint = await t.audit.checkpoint();
    expect(checkpoint.treeSize).toBe(6);
    expect(await t.audit.verify()).toMatchObject({ ok: true, treeSize: 6, problems: [] });
  });

  it('a forged row inserted at the next seq, guards dropped, stays reported as inserted: the integrator does not sign over it', async () => {
    await storeEvents(t, 3);
    await t.audit.checkpoint();
    const runner = t.dataSource.createQueryRunner();
    try {
      for (const sql of appendOnlyStatements(runner).drop) await runner.query(sql);
    } finally {
      await runner.release();
    }
    const forged = await forge(new Date('2025-12-01T10:00:05.000Z'), 4);
    expect(kinds(await t.audit.verify())).toEqual([{ kind: 'inserted', seq: 4, id: forged }]);
    // A pass of the integrator (what the timer does every sequenceEvery) neither takes it nor signs it.
    await expect(t.audit.checkpoint()).rejects.toThrow(`event ${forged} has seq 4`);
    await storeEvents(t, 2);
    await expect(t.audit.checkpoint()).rejects.toThrow(`event ${forged} has seq 4`);
    expect(kinds(await t.audit.verify())).toEqual([{ kind: 'inserted', seq: 4, id: forged }]);
  });
});
