import { In } from 'typeorm';
import { describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { captureApp } from '../app/capture-harness.js';
import { CPS_SOCIAL_ENTITIES, CpsMember, CpsPost, CpsReply } from '../app/capture-scenario/cps-social-entities.js';
import { databases } from '../support/test-database.js';

const keyOf = (c: AuditChange) => `${c.entity}:${c.id}:${c.operation}`;

/**
 * Links, cascades and query-builder writes of a small social app, each inside one
 * `@Audited` request: one intent row whose changes are the net change of the request.
 */
describe.each(databases())('capture of links and cascades on %s', (kind) => {
  const h = captureApp(kind, CPS_SOCIAL_ENTITIES);
  let serial = 0;

  async function inHandler(fn: () => Promise<unknown>): Promise<AuditChange[]> {
    const result = await h.run('handler', fn);
    expect(result.status).toBe(201);
    const rows = await h.t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual(['intent:edge.run:success']);
    return rows[0]!.changes ?? [];
  }
  const members = () => h.ds.getRepository(CpsMember);
  const posts = () => h.ds.getRepository(CpsPost);
  const member = (extra: Partial<CpsMember> = {}) => h.t.seed(() => members().save(members().create({ handle: `m${++serial}`, ...extra })));
  const post = (author: CpsMember, extra: Partial<CpsPost> = {}) => h.t.seed(() => posts().save(posts().create({ title: `p${++serial}`, author, ...extra })));

  it.runIf(kind === 'mariadb')('a query-builder update with ORDER BY and LIMIT records only the row it changed', async () => {
    const tag = `lim${++serial}`;
    const rows = await h.t.seed(() => members().save([{ handle: tag }, { handle: tag }, { handle: tag }]));
    const changes = await inHandler(() => members().createQueryBuilder().update().set({ active: true }).where('handle = :tag', { tag }).orderBy('id', 'ASC').limit(1).execute());
    expect((await members().findBy({ handle: tag, active: true })).map((r) => r.id)).toEqual([rows[0]!.id]);
    expect(changes).toEqual([{ entity: 'CpsMember', id: String(rows[0]!.id), operation: 'update', fields: { active: { from: false, to: true } } }]);
  });

  it('update() by criteria setting the value a row already has records nothing', async () => {
    const m = await member({ active: true });
    const changes = await inHandler(() => members().update({ id: m.id }, { active: true, handle: m.handle }));
    expect(changes).toEqual([]);
  });

  it('update() by criteria of a boolean records booleans', async () => {
    const m = await member();
    const changes = await inHandler(() => members().update({ id: m.id }, { active: true }));
    expect(changes).toEqual([{ entity: 'CpsMember', id: String(m.id), operation: 'update', fields: { active: { from: false, to: true } } }]);
  });

  /** X follows Y, Z follows X, X wrote P (with a reply R, liked by Y), X likes Y's post Q. */
  async function network() {
    const x = await member();
    const y = await member();
    const z = await member();
    await h.t.seed(async () => {
      await members().createQueryBuilder().relation(CpsMember, 'following').of(x).add(y);
      await members().createQueryBuilder().relation(CpsMember, 'following').of(z).add(x);
    });
    const p = await post(x);
    const q = await post(y);
    const r = await h.t.seed(() => h.ds.getRepository(CpsReply).save({ text: 'hi', post: p }));
    await h.t.seed(async () => {
      await posts().createQueryBuilder().relation(CpsPost, 'likedBy').of(p).add(y);
      await posts().createQueryBuilder().relation(CpsPost, 'likedBy').of(q).add(x);
    });
    return { x, y, z, p, q, r };
  }

  function expectMemberGone(changes: AuditChange[], n: Awaited<ReturnType<typeof network>>): void {
    const { x, y, z, p, q, r } = n;
    expect(changes.map(keyOf).sort()).toEqual(
      [`CpsMember:${x.id}:delete`, `CpsMember:${z.id}:update`, `CpsPost:${p.id}:delete`, `CpsPost:${q.id}:update`, `CpsReply:${r.id}:delete`].sort(),
    );
    const find = (key: string) => changes.find((c) => keyOf(c) === key)!;
    expect(find(`CpsMember:${x.id}:delete`).fields['following']).toEqual({ added: [], removed: [String(y.id)] });
    expect(find(`CpsMember:${z.id}:update`).fields).toEqual({ following: { added: [], removed: [String(x.id)] } });
    expect(find(`CpsPost:${p.id}:delete`).fields['likedBy']).toEqual({ added: [], removed: [String(y.id)] });
    expect(find(`CpsPost:${p.id}:delete`).fields['author']).toEqual({ from: x.id, to: null });
    expect(find(`CpsPost:${q.id}:update`).fields).toEqual({ likedBy: { added: [], removed: [String(x.id)] } });
    expect(find(`CpsReply:${r.id}:delete`).fields['post']).toEqual({ from: p.id, to: null });
    expect(changes.some((c) => c.partial)).toBe(false);
  }

  it('deleting a member by id records its links both ways and the posts and replies removed with it', async () => {
    const n = await network();
    const changes = await inHandler(() => members().delete(n.x.id));
    expect(await h.ds.getRepository(CpsReply).countBy({ id: n.r.id })).toBe(0);
    expectMemberGone(changes, n);
    const history = await h.t.audit.history({ type: 'CpsReply', id: n.r.id });
    expect(history).toHaveLength(1);
  });

  it('removing a loaded member records the same', async () => {
    const n = await network();
    const changes = await inHandler(async () => members().remove(await members().findOneByOrFail({ id: n.x.id })));
    expectMemberGone(changes, n);
  });

  it('links written by RelationQueryBuilder from the inverse side are recorded on the owning side', async () => {
    const a = await member();
    const b = await member();
    const p = await post(a);
    const added = await inHandler(() => members().createQueryBuilder().relation(CpsMember, 'likes').of(b).add(p));
    expect(added).toEqual([{ entity: 'CpsPost', id: String(p.id), operation: 'update', fields: { likedBy: { added: [String(b.id)], removed: [] } } }]);
    await h.t.clearAudit();
    const swapped = await inHandler(() => posts().createQueryBuilder().relation(CpsPost, 'likedBy').of(p).addAndRemove([a.id], [b.id]));
    expect(swapped).toEqual([{ entity: 'CpsPost', id: String(p.id), operation: 'update', fields: { likedBy: { added: [String(a.id)], removed: [String(b.id)] } } }]);
  });

  it('a link added and removed again in one request is no change', async () => {
    const a = await member();
    const p = await post(a);
    const changes = await inHandler(async () => {
      const rel = () => posts().createQueryBuilder().relation(CpsPost, 'likedBy').of(p);
      await rel().add(a);
      await rel().remove(a);
    });
    expect(changes).toEqual([]);
  });

  it('a link removed and added again in one request is no change', async () => {
    const a = await member();
    const b = await member();
    await h.t.seed(() => members().createQueryBuilder().relation(CpsMember, 'following').of(a).add(b));
    const changes = await inHandler(async () => {
      const loaded = await members().findOneOrFail({ where: { id: a.id }, relations: { following: true } });
      loaded.following = [];
      await members().save(loaded);
      loaded.following = [{ id: b.id } as CpsMember];
      await members().save(loaded);
    });
    expect(changes).toEqual([]);
  });

  it('a many-to-many set to the same ids as key-only objects is no change', async () => {
    const a = await member();
    const b = await member();
    await h.t.seed(() => members().createQueryBuilder().relation(CpsMember, 'following').of(a).add(b));
    const changes = await inHandler(async () => {
      const loaded = await members().findOneOrFail({ where: { id: a.id }, relations: { following: true } });
      loaded.following = [{ id: b.id } as CpsMember];
      await members().save(loaded);
    });
    expect(changes).toEqual([]);
  });

  it('a post inserted and removed in one request is no change', async () => {
    const a = await member();
    const changes = await inHandler(async () => {
      const p = await posts().save(posts().create({ title: 'ephemeral', author: a }));
      await posts().remove(p);
    });
    expect(changes).toEqual([]);
  });
  it('deleting a member nulls the editor of the posts it edited, recorded as updates', async () => {
    const a = await member();
    const e = await member();
    const p = await post(a, { editor: e });
    const changes = await inHandler(() => members().delete(e.id));
    expect((await posts().findOneOrFail({ where: { id: p.id }, relations: { editor: true } })).editor).toBeNull();
    expect(changes.map(keyOf).sort()).toEqual([`CpsMember:${e.id}:delete`, `CpsPost:${p.id}:update`]);
    expect(changes.find((c) => c.entity === 'CpsPost')!.fields).toEqual({ editor: { from: e.id, to: null } });
  });

  it('deleting a reply removes its thread of replies, each recorded', async () => {
    const a = await member();
    const p = await post(a);
    const replies = h.ds.getRepository(CpsReply);
    const root = await h.t.seed(() => replies.save({ text: 'root', post: p }));
    const child = await h.t.seed(() => replies.save({ text: 'child', post: p, parent: root }));
    const grandchild = await h.t.seed(() => replies.save({ text: 'grandchild', post: p, parent: child }));
    const sibling = await h.t.seed(() => replies.save({ text: 'sibling', post: p }));
    const changes = await inHandler(() => replies.delete(root.id));
    expect(await replies.countBy({ id: grandchild.id })).toBe(0);
    expect(await replies.countBy({ id: sibling.id })).toBe(1);
    expect(changes.map(keyOf).sort()).toEqual([`CpsReply:${root.id}:delete`, `CpsReply:${child.id}:delete`, `CpsReply:${grandchild.id}:delete`].sort());
    expect(changes.find((c) => c.id === String(grandchild.id))!.fields['parent']).toEqual({ from: child.id, to: null });
  });

  it('deleting a post removes its replies and their threads', async () => {
    const a = await member();
    const p = await post(a);
    const replies = h.ds.getRepository(CpsReply);
    const root = await h.t.seed(() => replies.save({ text: 'root', post: p }));
    const child = await h.t.seed(() => replies.save({ text: 'child', post: p, parent: root }));
    const changes = await inHandler(() => posts().delete(p.id));
    expect(changes.map(keyOf).sort()).toEqual([`CpsPost:${p.id}:delete`, `CpsReply:${root.id}:delete`, `CpsReply:${child.id}:delete`].sort());
    expect(changes.filter((c) => c.entity === 'CpsReply').every((c) => JSON.stringify(c.fields).includes('"post":{"from":' + p.id))).toBe(true);
  });
  it('deleting two members who follow each other, in one statement, records two deletes and their links', async () => {
    const a = await member();
    const b = await member();
    const c = await member();
    await h.t.seed(async () => {
      await members().createQueryBuilder().relation(CpsMember, 'following').of(a).add([b, c]);
      await members().createQueryBuilder().relation(CpsMember, 'following').of(b).add(a);
      await members().createQueryBuilder().relation(CpsMember, 'following').of(c).add(a);
    });
    const changes = await inHandler(() => members().delete({ id: In([a.id, b.id]) }));
    expect(changes.map(keyOf).sort(), JSON.stringify(changes)).toEqual([`CpsMember:${a.id}:delete`, `CpsMember:${b.id}:delete`, `CpsMember:${c.id}:update`].sort());
    const find = (id: number) => changes.find((ch) => ch.id === String(id))!;
    expect((find(a.id).fields['following'] as { removed: string[] }).removed.sort()).toEqual([String(b.id), String(c.id)].sort());
    expect(find(b.id).fields['following']).toEqual({ added: [], removed: [String(a.id)] });
    expect(find(c.id).fields).toEqual({ following: { added: [], removed: [String(a.id)] } });
  });
});
