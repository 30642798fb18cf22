// Read-side scenarios on a server whose time zone is not UTC (set before the app starts):
// find()'s bounds, cursors over one time, export()'s times and purge() all read and
// compare instants, as on a server in UTC. Also filters that say two things about one
// field (actor and actorType) are not settled by dropping one of them.
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError, type AuditQuery } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { rdsDatabase } from '../support/read-scenario-database.js';
import { databases, type TestDatabase } from '../support/test-database.js';

async function text(stream: Readable): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += String(chunk);
  return out;
}

describe.each(databases())('read side on a server in Pacific/Auckland on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  const zone = process.env['TZ'];
  const edge = new Date('2026-07-01T00:00:00.000Z');
  const ids = { before: randomUUID(), at: randomUUID(), after: randomUUID() };
  const same = Array.from({ length: 30 }, () => randomUUID());

  beforeAll(async () => {
    process.env['TZ'] = 'Pacific/Auckland';
    db = (await rdsDatabase(kind)).db;
    t = await createTestApp({ db, adapter: 'express' });
    const row = (id: string, occurredAt: Date, action: string, actorType = 'user', actorId = 'u1') => ({
      id,
      occurredAt,
      action,
      outcome: 'success',
      kind: 'intent',
      actorType,
      actorId,
      source: 'job',
    });
    await t.dataSource.getRepository(AuditLogEntity).insert([
      row(ids.before, new Date(edge.getTime() - 1), 'zone.edge'),
      row(ids.at, edge, 'zone.edge'),
      row(ids.after, new Date(edge.getTime() + 1), 'zone.edge'),
      ...same.map((id, i) => row(id, new Date('2026-07-02T23:30:00.250Z'), 'zone.same', i % 2 ? 'user' : 'service', i % 2 ? 'u1' : 'svc')),
    ] as never);
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
    if (zone === undefined) delete process.env['TZ'];
    else process.env['TZ'] = zone;
  });

  const of = async (query: AuditQuery): Promise<string[]> => (await t.audit.find({ action: 'zone.edge', ...query })).items.map((e) => e.id).sort();

  it('keeps from inclusive and to exclusive, for a Date and for text with and without an offset', async () => {
    const sorted = (...list: string[]): string[] => [...list].sort();
    expect(await of({ from: edge })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ to: edge })).toEqual([ids.before]);
    expect(await of({ from: '2026-07-01T00:00:00' })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ from: '2026-07-01T12:00:00+12:00' })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ to: '2026-07-01' })).toEqual([ids.before]);
  });

  it('reads back the stored instants, by find() and by export() in both formats', async () => {
    const found = await t.audit.find({ action: 'zone.edge' });
    expect(found.items.map((e) => e.occurredAt.toISOString()).sort()).toEqual(['2026-06-30T23:59:59.999Z', '2026-07-01T00:00:00.000Z', '2026-07-01T00:00:00.001Z']);
    const lines = (await text(t.audit.export({ action: 'zone.edge' }))).trim().split('\n').map((line) => JSON.parse(line) as { occurredAt: string });
    expect(lines.map((line) => line.occurredAt)).toEqual(['2026-06-30T23:59:59.999Z', '2026-07-01T00:00:00.000Z', '2026-07-01T00:00:00.001Z']);
    const csv = await text(t.audit.export({ action: 'zone.edge' }, { format: 'csv' }));
    expect(csv).toContain('"2026-07-01T00:00:00.000Z"');
  });

  it('pages through events of one time with cursors, each once', async () => {
    const seen: string[] = [];
    let cursor: string | null | undefined;
    for (let i = 0; i < 40; i++) {
      const page = await t.audit.find({ action: 'zone.same', limit: 4, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((e) => e.id));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    expect(seen.length).toBe(same.length);
    expect(new Set(seen)).toEqual(new Set(same));
  });

  it('does not drop one of two filters that disagree about the actor (actorType and actor.type, actorId and actor.id)', async () => {
    for (const query of [
      { action: 'zone.same', actorType: 'user', actor: { type: 'service' } },
      { action: 'zone.same', actorId: 'u1', actor: { id: 'svc' } },
    ]) {
      // Either both apply (no event is by both actors) or the query is refused.
      const outcome = await t.audit.find(query as AuditQuery).then(
        (page) => page.items.length,
        (error: unknown) => (error instanceof InvalidAuditQueryError ? 0 : error),
      );
      expect(outcome, JSON.stringify(query)).toBe(0);
    }
  });
});
