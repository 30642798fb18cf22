// Read-side scenarios of find() and history(): keyset pages over many events sharing one
// time, events stored between page reads, filters combined, the time range's bounds, actor
// and target ids as users type them, many-to-many links in a target's history, and
// queries find() must refuse with an error naming the problem.
import { randomUUID } from 'node:crypto';
import { Column, Entity, JoinTable, ManyToMany, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLogEntity, InvalidAuditQueryError, type AuditEvent, type AuditQuery } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { rdsDatabase } from '../support/read-scenario-database.js';
import { databases, type TestDatabase } from '../support/test-database.js';

@Entity('rds_article')
class RdsArticle {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  title!: string;
}

@Entity('rds_reader')
class RdsReader {
  @PrimaryColumn({ type: 'varchar', length: 64 })
  handle!: string;

  @ManyToMany(() => RdsArticle)
  @JoinTable({ name: 'rds_reader_favorites' })
  favorites!: RdsArticle[];
}

const SAME_TIME = new Date('2026-03-01T10:00:00.000Z');
const SEEDED = 250;

interface Seed {
  id: string;
  actorId: string;
  source: string;
  outcome: 'success' | 'failure';
  targetId: string;
}

/** Every page of `query`, following nextCursor (at most `max` pages). */
async function allPages(t: TestApp, query: AuditQuery, max = 400): Promise<AuditEvent[][]> {
  const pages: AuditEvent[][] = [];
  let cursor: string | undefined;
  for (let i = 0; i < max; i++) {
    const page = await t.audit.find({ ...query, ...(cursor ? { cursor } : {}) });
    pages.push(page.items);
    if (!page.nextCursor) return pages;
    cursor = page.nextCursor;
  }
  throw new Error(`more than ${max} pages`);
}

const forge = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const unforge = (cursor: string): [string, string, string] => JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string, string];

describe.each(databases())('find() and history() scenarios on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  const seeds: Seed[] = [];

  const insert = async (rows: Array<Partial<AuditLogEntity>>): Promise<void> => {
    for (let i = 0; i < rows.length; i += 100) {
      await t.dataSource.getRepository(AuditLogEntity).insert(rows.slice(i, i + 100) as never);
    }
  };
  const row = (over: Partial<AuditLogEntity>): Partial<AuditLogEntity> => ({
    id: randomUUID(),
    occurredAt: SAME_TIME,
    action: 'doc.edited',
    outcome: 'success',
    kind: 'intent',
    actorType: 'user',
    actorId: 'u0',
    source: 'http',
    ...over,
  });

  beforeAll(async () => {
    db = (await rdsDatabase(kind)).db;
    t = await createTestApp({ db, adapter: 'express', entities: [RdsArticle, RdsReader] });
    for (let i = 0; i < SEEDED; i++) {
      seeds.push({
        id: randomUUID(),
        actorId: `u${i % 5}`,
        source: i % 2 ? 'http' : 'job',
        outcome: i % 3 === 0 ? 'failure' : 'success',
        targetId: String(i % 7),
      });
    }
    await insert(seeds.map((s) => row({ id: s.id, actorId: s.actorId, source: s.source, outcome: s.outcome, targetType: 'doc', targetId: s.targetId, action: 'doc.edited' })));
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  it.each([1, 7, 50, 249, 250, 1000])('pages through 250 events of one time with limit %i: each once, none missing, in order', async (limit) => {
    const pages = await allPages(t, { action: 'doc.edited', limit });
    const ids = pages.flat().map((e) => e.id);
    expect(ids.length).toBe(SEEDED);
    expect(new Set(ids).size).toBe(SEEDED);
    expect(new Set(ids)).toEqual(new Set(seeds.map((s) => s.id)));
    for (const page of pages) expect(page.length).toBeLessThanOrEqual(limit);
    // No page but the last is short, and the last is not empty.
    for (const page of pages.slice(0, -1)) expect(page.length).toBe(limit);
    expect(pages[pages.length - 1]!.length).toBeGreaterThan(0);
  });

  it('keeps every event once when events are stored between the page reads', async () => {
    const first = await t.audit.find({ source: 'job', limit: 40 });
    const seen = first.items.map((e) => e.id);
    // Stored meanwhile: events of the same time (ids on either side of the cursor), and newer ones.
    const added = Array.from({ length: 30 }, (_, i) => row({ action: 'doc.added', source: 'job', occurredAt: i % 2 ? SAME_TIME : new Date(SAME_TIME.getTime() + 60_000) }));
    await insert(added);
    let cursor = first.nextCursor;
    for (let i = 0; cursor && i < 100; i++) {
      const page = await t.audit.find({ source: 'job', limit: 40, cursor });
      seen.push(...page.items.map((e) => e.id));
      cursor = page.nextCursor;
    }
    expect(cursor).toBeNull();
    expect(new Set(seen).size).toBe(seen.length);
    const jobs = seeds.filter((s) => s.source === 'job').map((s) => s.id);
    for (const id of jobs) expect(seen).toContain(id);
    // What the page cursors had not passed yet may show up; newer events never do.
    const newer = added.filter((a) => (a.occurredAt as Date).getTime() > SAME_TIME.getTime()).map((a) => a.id);
    for (const id of newer) expect(seen).not.toContain(id);
  });

  it('combines filters: actor, source, outcome, target and action together, paged', async () => {
    const query = { actorId: 'u1', actorType: 'user', source: 'http', outcome: 'failure' as const, target: { type: 'doc', id: 3 }, action: ['doc.edited', 'doc.none'] };
    const expected = seeds.filter((s) => s.actorId === 'u1' && s.source === 'http' && s.outcome === 'failure' && s.targetId === '3').map((s) => s.id);
    expect(expected.length).toBeGreaterThan(0);
    const got = (await allPages(t, { ...query, limit: 2 })).flat().map((e) => e.id);
    expect(new Set(got)).toEqual(new Set(expected));
    expect(got.length).toBe(expected.length);
    // A number and its text name the same target.
    const asText = (await allPages(t, { ...query, target: { type: 'doc', id: '3' }, limit: 1000 })).flat().map((e) => e.id);
    expect(new Set(asText)).toEqual(new Set(expected));
    // The same filters in export() give the same events.
    const chunks: string[] = [];
    for await (const chunk of t.audit.export(query)) chunks.push(String(chunk));
    const exported = chunks.join('').split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { id: string }).id);
    expect(new Set(exported)).toEqual(new Set(expected));
  });

  it('takes from as inclusive and to as exclusive, also given as ISO text with an offset', async () => {
    const edge = new Date('2026-04-02T00:00:00.000Z');
    const ids = { before: randomUUID(), at: randomUUID(), after: randomUUID() };
    await insert([
      row({ id: ids.before, action: 'range.edge', occurredAt: new Date(edge.getTime() - 1) }),
      row({ id: ids.at, action: 'range.edge', occurredAt: edge }),
      row({ id: ids.after, action: 'range.edge', occurredAt: new Date(edge.getTime() + 1) }),
    ]);
    const of = async (query: AuditQuery): Promise<string[]> => (await t.audit.find({ action: 'range.edge', ...query })).items.map((e) => e.id).sort();
    const sorted = (...list: string[]): string[] => [...list].sort();
    expect(await of({ from: edge })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ to: edge })).toEqual([ids.before]);
    expect(await of({ from: edge, to: new Date(edge.getTime() + 1) })).toEqual([ids.at]);
    expect(await of({ from: '2026-04-02T02:00:00+02:00' })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ from: '2026-04-01T19:00:00.000-05:00' })).toEqual(sorted(ids.at, ids.after));
    expect(await of({ to: '2026-04-02T02:00:00.001+0200' })).toEqual(sorted(ids.before, ids.at));
    expect(await of({ from: '2026-04-02T02:00:00.001+02:00' })).toEqual([ids.after]);
    expect(await of({ from: '2026-04-02', to: '2026-04-02T00:00:00.001Z' })).toEqual([ids.at]);
    expect(await of({ from: edge, to: edge })).toEqual([]);
  });

  it('finds actor ids in any script exactly', async () => {
    const actors = ['ユーザー', 'Zoë', 'Zoe', 'Zoe\u0308', '👩‍💻', 'العربية', 'ß', 'ss'];
    const byActor = new Map(actors.map((actor) => [actor, randomUUID()]));
    await insert(actors.map((actor) => row({ id: byActor.get(actor)!, action: 'unicode.actor', actorId: actor, occurredAt: new Date('2026-05-01T00:00:00Z') })));
    for (const actor of actors) {
      const found = await t.audit.find({ action: 'unicode.actor', actorId: actor });
      expect(
        found.items.map((e) => e.actor.id),
        `actorId ${JSON.stringify(actor)}`,
      ).toEqual([actor]);
    }
  });

  it('matches actor ids, target ids and request ids exactly: not in another case, with a trailing space or another accent', async () => {
    const at = new Date('2026-05-02T00:00:00Z');
    const spellings = ['alice', 'Alice', 'ALICE', 'alice ', 'alíce'];
    await insert(
      spellings.map((s) => row({ action: 'exact.match', actorId: s, targetType: 'doc', targetId: `k-${s}`, requestId: `r-${s}`, occurredAt: at })),
    );
    const actorIds = (await t.audit.find({ action: 'exact.match', actorId: 'alice' })).items.map((e) => e.actor.id);
    const targetIds = (await t.audit.find({ action: 'exact.match', target: { type: 'doc', id: 'k-alice' } })).items.map((e) => e.target?.id);
    const requestIds = (await t.audit.find({ action: 'exact.match', requestId: 'r-alice' })).items.map((e) => e.request.requestId);
    const history = (await t.audit.history({ type: 'doc', id: 'k-alice' })).map((e) => e.target?.id);
    let exported = '';
    for await (const chunk of t.audit.export({ action: 'exact.match', actorId: 'alice' })) exported += String(chunk);
    const exportedActorIds = exported.split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { actorId: string }).actorId);
    expect({ actorIds, targetIds, requestIds, history, exportedActorIds }).toEqual({
      actorIds: ['alice'],
      targetIds: ['k-alice'],
      requestIds: ['r-alice'],
      history: ['k-alice'],
      exportedActorIds: ['alice'],
    });
  });

  it('finds the events of an actor id and a target id holding a NUL or a lone surrogate, as logged', async () => {
    const problems: string[] = [];
    for (const [i, value] of ['ops\u0000x', 'lone\uD800'].entries()) {
      const id = await t.audit.log({ action: 'odd.id', actor: { type: 'user', id: value }, target: { type: 'doc', id: value }, reason: `odd ${i}` });
      const tries: Array<[string, () => Promise<string[]>]> = [
        ['find({ actorId })', async () => (await t.audit.find({ action: 'odd.id', actorId: value })).items.map((e) => e.id)],
        ['find({ target })', async () => (await t.audit.find({ action: 'odd.id', target: { type: 'doc', id: value } })).items.map((e) => e.id)],
        ['history(target)', async () => (await t.audit.history({ type: 'doc', id: value })).map((e) => e.id)],
      ];
      for (const [name, run] of tries) {
        const got = await run().then(
          (list) => list,
          (error: unknown) => `${(error as Error).constructor.name}: ${(error as Error).message}`,
        );
        if (!Array.isArray(got) || got.length !== 1 || got[0] !== id) problems.push(`${name} of ${JSON.stringify(value)}: ${JSON.stringify(got)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("shows in an article's history the favourites recorded on the reader's side; a numeric id and its text alike", async () => {
    const article = await t.dataSource.getRepository(RdsArticle).save({ title: 'On keysets' });
    await t.audit.runAs({ type: 'user', id: 'ana' }, async () => {
      const reader = await t.dataSource.getRepository(RdsReader).save({ handle: 'ana', favorites: [] as RdsArticle[] });
      reader.favorites = [article];
      await t.dataSource.getRepository(RdsReader).save(reader);
    });
    const asNumber = await t.audit.history({ type: 'RdsArticle', id: article.id });
    const asText = await t.audit.history({ type: 'rdsArticle', id: String(article.id) });
    expect(asNumber.map((e) => e.id)).toEqual(asText.map((e) => e.id));
    expect(asNumber.length).toBeGreaterThanOrEqual(1);
    const linked = asNumber.filter((e) => JSON.stringify(e.changes ?? []).includes('RdsReader'));
    expect(linked.length).toBeGreaterThanOrEqual(1);
    // history(limit) keeps the oldest.
    const limited = await t.audit.history({ type: 'RdsArticle', id: article.id }, { limit: 1 });
    expect(limited.map((e) => e.id)).toEqual(asNumber.slice(0, 1).map((e) => e.id));
  });

  it('returns a long history of one time each once, oldest first, and its oldest `limit`', async () => {
    const at = new Date('2026-05-03T00:00:00Z');
    const big = Array.from({ length: 2100 }, () => randomUUID());
    await insert(big.map((id) => row({ id, action: 'big.history', targetType: 'doc', targetId: 'big-1', occurredAt: at })));
    const all = await t.audit.history({ type: 'doc', id: 'big-1' });
    expect(all.length).toBe(big.length);
    expect(new Set(all.map((e) => e.id))).toEqual(new Set(big));
    const limited = await t.audit.history({ type: 'doc', id: 'big-1' }, { limit: 1500 });
    expect(limited.map((e) => e.id)).toEqual(all.slice(0, 1500).map((e) => e.id));
    // find() pages newest first: the same events, the other way round.
    const pages = (await allPages(t, { target: { type: 'doc', id: 'big-1' }, limit: 1000 })).flat();
    expect(pages.map((e) => e.id)).toEqual(all.map((e) => e.id).reverse());
  });

  describe('refused queries', () => {
    const refuses = async (query: unknown, message: RegExp): Promise<void> => {
      const error = await t.audit.find(query as AuditQuery).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(query)).toBeInstanceOf(InvalidAuditQueryError);
      expect((error as Error).message).toMatch(message);
    };

    it('refuses limits out of range and an unknown outcome, naming them', async () => {
      await refuses({ limit: 0 }, /limit/);
      await refuses({ limit: 1_000_000 }, /limit.*1000/);
      await refuses({ limit: 1001 }, /limit/);
      await refuses({ limit: 2.5 }, /limit/);
      await refuses({ limit: '10' }, /limit/);
      await refuses({ limit: Number.NaN }, /limit/);
      await refuses({ outcome: 'ok' }, /outcome/);
      await refuses({ kind: 'INTENT' }, /kind/);
      await refuses({ from: '2026-13-01' }, /from/);
      await refuses({ actorid: 'u1' }, /actorid/);
    });

    it('refuses a garbled cursor and the cursor of another query', async () => {
      const { nextCursor } = await t.audit.find({ actorId: 'u1', limit: 5 });
      expect(nextCursor).toBeTruthy();
      await refuses({ actorId: 'u1', limit: 5, cursor: 'not-a-cursor' }, /cursor/);
      await refuses({ actorId: 'u1', limit: 5, cursor: '' }, /cursor/);
      await refuses({ actorId: 'u1', limit: 5, cursor: nextCursor!.slice(0, -3) }, /cursor/);
      await refuses({ actorId: 'u1', limit: 5, cursor: 42 }, /cursor/);
      await refuses({ actorId: 'u2', limit: 5, cursor: nextCursor }, /cursor/);
      await refuses({ actorId: 'u1', source: 'http', limit: 5, cursor: nextCursor }, /cursor/);
    });

    it('refuses a cursor whose event id was altered to one that is not an event id, with InvalidAuditQueryError', async () => {
      const { nextCursor } = await t.audit.find({ actorId: 'u1', limit: 5 });
      const [at, , filters] = unforge(nextCursor!);
      for (const id of ['zzz', "' OR 1=1 --", '']) {
        await refuses({ actorId: 'u1', limit: 5, cursor: forge([at, id, filters]) }, /cursor/);
      }
    });

    it('a cursor re-encoded at another valid position (cursors are not signed) still reads only what its filters match', async () => {
      const first = await t.audit.find({ actorId: 'u1', limit: 5 });
      const [at, id, filters] = unforge(first.nextCursor!);
      // Moved back one second: a valid-looking position that find() never handed out.
      const moved = forge([new Date(Date.parse(at) - 1000).toISOString(), id, filters]);
      const page = await t.audit.find({ actorId: 'u1', limit: 5, cursor: moved });
      expect(page.items.every((event) => event.actor.id === 'u1')).toBe(true);
      expect(page.items.every((event) => Date.parse(event.occurredAt.toISOString()) < Date.parse(at))).toBe(true);
    });
  });
});
