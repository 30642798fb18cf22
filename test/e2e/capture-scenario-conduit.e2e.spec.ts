import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditChange, AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { CPS_CONDUIT_ENTITIES, CpsArticle, CpsComment, CpsConduitController, CpsTag, CpsUser } from '../app/capture-scenario/cps-conduit.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const AS = (user: string) => ({ 'x-user': user });

/**
 * A RealWorld-shaped API written as its usual NestJS + TypeORM implementations write it:
 * each `@Audited` request is one intent row whose changes are exactly the rows and links
 * it changed, with no fallback rows.
 */
describe.each(databases())('a RealWorld-style Conduit API on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: CPS_CONDUIT_ENTITIES, controllers: [CpsConduitController] });
    await t.dataSource.getRepository(CpsUser).save([{ username: 'ann' }, { username: 'ben' }, { username: 'cid' }]);
    await t.dataSource.getRepository(CpsTag).save({ name: 'orm' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const userId = async (username: string) => String((await t.dataSource.getRepository(CpsUser).findOneByOrFail({ username })).id);
  const tagId = async (name: string) => String((await t.dataSource.getRepository(CpsTag).findOneByOrFail({ name })).id);
  const articleId = async (slug: string) => String((await t.dataSource.getRepository(CpsArticle).findOneByOrFail({ slug })).id);
  const create = (user: string, title: string, tagList: string[]) =>
    t.request('/cps/articles', { method: 'POST', json: { title, description: `on ${title}`, tagList }, headers: AS(user) });

  async function intentOf(action: string): Promise<AuditLogEntity & { changes: AuditChange[] }> {
    const rows = await t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}:${row.outcome}`)).toEqual([`intent:${action}:success`]);
    return { ...rows[0]!, changes: rows[0]!.changes ?? [] };
  }
  const sorted = (ids: string[]) => [...ids].sort();
  const byKey = (changes: AuditChange[]) => [...changes].sort((a, b) => `${a.entity}:${a.id}`.localeCompare(`${b.entity}:${b.id}`));

  it('create with an existing and a new tag: the article with its links and the new tag, nothing else', async () => {
    const response = await create('ann', 'Hello World', ['orm', 'nest']);
    expect(response.status).toBe(201);
    const intent = await intentOf('cps.article.created');
    const id = await articleId('hello-world');
    expect(intent.changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual(
      [`CpsArticle:${id}:insert`, `CpsTag:${await tagId('nest')}:insert`].sort(),
    );
    const article = intent.changes.find((c) => c.entity === 'CpsArticle')!;
    expect(article.fields['title']).toEqual({ from: null, to: 'Hello World' });
    expect(article.fields['author']).toEqual({ from: null, to: Number(await userId('ann')) });
    expect(article.fields['favoriteCount']).toEqual({ from: null, to: 0 });
    expect(article.fields['updatedAt']).toBeUndefined();
    const tags = article.fields['tags'] as { added: string[]; removed: string[] };
    expect(sorted(tags.added)).toEqual(sorted([await tagId('orm'), await tagId('nest')]));
    expect(tags.removed).toEqual([]);
    expect(intent.targetType).toBeNull(); // two instances changed
  });

  it('update: the title and the tags replaced, as one update of the article', async () => {
    await t.seed(() => create('ann', 'Second', ['orm', 'old']));
    const id = await articleId('second');
    const response = await t.request('/cps/articles/second', { method: 'PUT', json: { title: 'Second edition', tagList: ['orm', 'fresh'] }, headers: AS('ann') });
    expect(response.status).toBe(200);
    const intent = await intentOf('cps.article.updated');
    expect(byKey(intent.changes)).toEqual(
      byKey([
        { entity: 'CpsArticle', id, operation: 'update', fields: { title: { from: 'Second', to: 'Second edition' }, tags: { added: [await tagId('fresh')], removed: [await tagId('old')] } } },
        { entity: 'CpsTag', id: await tagId('fresh'), operation: 'insert', fields: { id: { from: null, to: Number(await tagId('fresh')) }, name: { from: null, to: 'fresh' } } },
      ] as AuditChange[]),
    );
  });

  it('favourite then unfavourite: the link on the user and the counter on the article; the article history holds both', async () => {
    await t.seed(() => create('ann', 'Liked', ['orm']));
    const id = await articleId('liked');
    const ben = await userId('ben');
    expect((await t.request('/cps/articles/liked/favorite', { method: 'POST', headers: AS('ben') })).status).toBe(201);
    const favourited = await intentOf('cps.article.favorited');
    expect(byKey(favourited.changes)).toEqual(
      byKey([
        { entity: 'CpsUser', id: ben, operation: 'update', fields: { favorites: { added: [id], removed: [] } } },
        { entity: 'CpsArticle', id, operation: 'update', fields: { favoriteCount: { from: 0, to: 1 } } },
      ] as AuditChange[]),
    );
    await t.clearAudit();
    expect((await t.request('/cps/articles/liked/favorite', { method: 'DELETE', headers: AS('ben') })).status).toBe(200);
    const unfavourited = await intentOf('cps.article.unfavorited');
    expect(byKey(unfavourited.changes)).toEqual(
      byKey([
        { entity: 'CpsUser', id: ben, operation: 'update', fields: { favorites: { added: [], removed: [id] } } },
        { entity: 'CpsArticle', id, operation: 'update', fields: { favoriteCount: { from: 1, to: 0 } } },
      ] as AuditChange[]),
    );
    const history = await t.audit.history({ type: 'CpsArticle', id });
    expect(history.map((event) => event.action)).toEqual(expect.arrayContaining(['cps.article.unfavorited']));
  });

  it('the article history by target type in another case still holds the favourite', async () => {
    await t.seed(() => create('ann', 'Cased', ['orm']));
    const id = await articleId('cased');
    expect((await t.request('/cps/articles/cased/favorite', { method: 'POST', headers: AS('cid') })).status).toBe(201);
    const history = await t.audit.history({ type: 'cpsArticle', id: Number(id) });
    expect(history.map((event) => event.action)).toEqual(['cps.article.favorited']);
    const userHistory = await t.audit.history({ type: 'CpsUser', id: await userId('cid') });
    expect(userHistory.map((event) => event.action)).toEqual(['cps.article.favorited']);
  });

  it('follow then unfollow: a self many-to-many link on the follower', async () => {
    const ann = await userId('ann');
    const cid = await userId('cid');
    expect((await t.request('/cps/profiles/cid/follow', { method: 'POST', headers: AS('ann') })).status).toBe(201);
    expect((await intentOf('cps.profile.followed')).changes).toEqual([{ entity: 'CpsUser', id: ann, operation: 'update', fields: { following: { added: [cid], removed: [] } } }]);
    expect((await t.request('/cps/profiles/cid/follow', { method: 'DELETE', headers: AS('ann') })).status).toBe(200);
    const rows = await t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}`)).toEqual(['intent:cps.profile.followed', 'intent:cps.profile.unfollowed']);
    expect(rows[1]!.changes).toEqual([{ entity: 'CpsUser', id: ann, operation: 'update', fields: { following: { added: [], removed: [cid] } } }]);
    const history = await t.audit.history({ type: 'CpsUser', id: cid });
    expect(history.map((event) => event.action)).toEqual(['cps.profile.followed', 'cps.profile.unfollowed']);
  });

  it('add a comment through the article’s list: one insert of the comment with its article and author', async () => {
    await t.seed(() => create('ann', 'Talk', ['orm']));
    const id = await articleId('talk');
    const response = await t.request('/cps/articles/talk/comments', { method: 'POST', json: { body: 'first!' }, headers: AS('ben') });
    expect(response.status).toBe(201);
    const comment = await t.dataSource.getRepository(CpsComment).findOneOrFail({ where: { body: 'first!' }, relations: { article: true, author: true } });
    expect(comment.article.id).toBe(Number(id));
    const intent = await intentOf('cps.comment.created');
    expect(intent.changes).toEqual([
      {
        entity: 'CpsComment',
        id: String(comment.id),
        operation: 'insert',
        fields: { id: { from: null, to: comment.id }, body: { from: null, to: 'first!' }, article: { from: null, to: Number(id) }, author: { from: null, to: Number(await userId('ben')) } },
      },
    ]);
  });

  it('delete a comment (delete by id, then the article saved without it): one delete with its values', async () => {
    await t.seed(async () => {
      await create('ann', 'Gone', ['orm']);
      await t.request('/cps/articles/gone/comments', { method: 'POST', json: { body: 'bye' }, headers: AS('ben') });
    });
    const id = await articleId('gone');
    const comment = await t.dataSource.getRepository(CpsComment).findOneByOrFail({ body: 'bye' });
    expect((await t.request(`/cps/articles/gone/comments/${comment.id}`, { method: 'DELETE' })).status).toBe(204);
    const intent = await intentOf('cps.comment.deleted');
    expect(intent.changes).toEqual([
      {
        entity: 'CpsComment',
        id: String(comment.id),
        operation: 'delete',
        fields: { id: { from: comment.id, to: null }, body: { from: 'bye', to: null }, article: { from: Number(id), to: null }, author: { from: Number(await userId('ben')), to: null } },
      },
    ]);
  });

  it('delete an article by criteria: the article, its tag links, its favourites links and its comments', async () => {
    await t.seed(async () => {
      await create('ann', 'Doomed Post', ['orm', 'doom']);
      await t.request('/cps/articles/doomed-post/comments', { method: 'POST', json: { body: 'c1' }, headers: AS('ben') });
      await t.request('/cps/articles/doomed-post/comments', { method: 'POST', json: { body: 'c2' }, headers: AS('cid') });
      await t.request('/cps/articles/doomed-post/favorite', { method: 'POST', headers: AS('ben') });
    });
    const id = await articleId('doomed-post');
    const comments = (await t.dataSource.getRepository(CpsComment).find({ where: { article: { id: Number(id) } } })).map((c) => String(c.id));
    expect(comments).toHaveLength(2);
    expect((await t.request('/cps/articles/doomed-post', { method: 'DELETE' })).status).toBe(204);
    expect(await t.dataSource.getRepository(CpsComment).countBy({ body: 'c1' })).toBe(0);
    const intent = await intentOf('cps.article.deleted');
    const kinds = intent.changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort();
    expect(kinds).toEqual(sorted([`CpsArticle:${id}:delete`, ...comments.map((c) => `CpsComment:${c}:delete`), `CpsUser:${await userId('ben')}:update`]));
    const article = intent.changes.find((c) => c.entity === 'CpsArticle')!;
    expect(article.fields['title']).toEqual({ from: 'Doomed Post', to: null });
    expect(article.fields['author']).toEqual({ from: Number(await userId('ann')), to: null });
    expect(sorted((article.fields['tags'] as { removed: string[] }).removed)).toEqual(sorted([await tagId('orm'), await tagId('doom')]));
    expect(intent.changes.find((c) => c.entity === 'CpsUser')!.fields).toEqual({ favorites: { added: [], removed: [id] } });
    expect(intent.changes.some((c) => c.partial)).toBe(false);
  });

  it('delete an article through remove(): the same changes as by criteria', async () => {
    await t.seed(async () => {
      await create('ann', 'Removed Post', ['orm']);
      await t.request('/cps/articles/removed-post/comments', { method: 'POST', json: { body: 'r1' }, headers: AS('ben') });
      await t.request('/cps/articles/removed-post/favorite', { method: 'POST', headers: AS('cid') });
    });
    const id = await articleId('removed-post');
    const comment = await t.dataSource.getRepository(CpsComment).findOneByOrFail({ body: 'r1' });
    expect((await t.request('/cps/articles-by-entity/removed-post', { method: 'DELETE' })).status).toBe(204);
    const intent = await intentOf('cps.article.removed');
    expect(intent.changes.map((c) => `${c.entity}:${c.id}:${c.operation}`).sort()).toEqual(
      sorted([`CpsArticle:${id}:delete`, `CpsComment:${comment.id}:delete`, `CpsUser:${await userId('cid')}:update`]),
    );
    const history = await t.audit.history({ type: 'CpsArticle', id });
    expect(history.map((e) => e.action)).toEqual(['cps.article.removed']);
  });

  it('saving an article loaded with its relations, unchanged, records no change', async () => {
    await t.seed(async () => {
      await create('ann', 'Static', ['orm', 'still']);
      await t.request('/cps/articles/static/comments', { method: 'POST', json: { body: 's1' }, headers: AS('ben') });
    });
    expect((await t.request('/cps/articles/static/same', { method: 'PUT' })).status).toBe(200);
    const intent = await intentOf('cps.article.resaved');
    expect(intent.changes).toEqual([]);
  });
});
