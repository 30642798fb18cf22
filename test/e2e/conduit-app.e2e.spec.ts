import type { AfterQueryEvent, EntitySubscriberInterface } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditChange, AuditLogEntity } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { ConduitController } from '../app/conduit/conduit.controller.js';
import { Article, Comment, CONDUIT_ENTITIES, Member, Tag } from '../app/conduit/conduit.entities.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const ALICE = { authorization: 'Bearer alice-token' }; // member 1
const BOB = { authorization: 'Bearer bob-token' }; // member 2

/** Entity tables and many-to-many junction tables of the app: what a write to each must show in `changes`. */
const TABLES: Record<string, { entity: string; field?: string }> = {
  conduit_member: { entity: 'Member' },
  conduit_tag: { entity: 'Tag' },
  conduit_article: { entity: 'Article' },
  conduit_comment: { entity: 'Comment' },
  conduit_article_tag: { entity: 'Article', field: 'tags' },
  conduit_favorite: { entity: 'Member', field: 'favorites' },
  conduit_follow: { entity: 'Member', field: 'following' },
};
const WRITE = /^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+(?:[`"]?\w+[`"]?\.)?[`"]?(\w+)[`"]?/i;

/**
 * A third-party-shaped app (Conduit: members, articles with tags, comments removed by
 * `ON DELETE CASCADE`, favourites and follows as many-to-many links), every mutating
 * endpoint `@Audited`: each request leaves exactly one intent row, no fallback row, and
 * that intent's changes name every row and link the request's SQL wrote.
 */
describe.each(databases())('a Conduit-shaped app on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;
  /** Write statements TypeORM ran since the last reset (the module's own tables left out). */
  const writes: Array<{ verb: string; table: string }> = [];

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: CONDUIT_ENTITIES, controllers: [ConduitController] });
    const recorder: EntitySubscriberInterface = {
      afterQuery(event: AfterQueryEvent) {
        const match = WRITE.exec(event.query);
        if (match && event.success && TABLES[match[2]!.toLowerCase()]) writes.push({ verb: match[1]!.toUpperCase(), table: match[2]!.toLowerCase() });
      },
    };
    (t.dataSource.subscribers as EntitySubscriberInterface[]).push(recorder);
    await t.dataSource.getRepository(Member).save([
      { id: 1, username: 'alice' },
      { id: 2, username: 'bob' },
    ]);
    await t.dataSource.getRepository(Tag).save({ name: 'nestjs' });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
    writes.length = 0;
  });

  /** The request's one intent row; fails when there are fallback rows or several intents. */
  async function intentOf(action: string): Promise<AuditLogEntity & { changes: AuditChange[] }> {
    const rows = await t.rows();
    expect(rows.map((row) => `${row.kind}:${row.action}`)).toEqual([`intent:${action}`]);
    expect(rows[0]!.outcome).toBe('success');
    return { ...rows[0]!, changes: rows[0]!.changes ?? [] };
  }

  /** Every write the request's SQL made is in the intent's changes: the entity's change, or the link field of a junction. */
  function expectEveryWriteRecorded(changes: AuditChange[]): void {
    expect(writes.length).toBeGreaterThan(0);
    for (const { table } of writes) {
      const { entity, field } = TABLES[table]!;
      const recorded = changes.filter((change) => change.entity === entity && (!field || field in change.fields));
      expect(recorded, `a write to ${table} has no change of ${entity}${field ? `.${field}` : ''} in ${JSON.stringify(changes)}`).not.toHaveLength(0);
    }
  }

  const articleId = async (slug: string) => (await t.dataSource.getRepository(Article).findOneByOrFail({ slug })).id;
  const tagId = async (name: string) => String((await t.dataSource.getRepository(Tag).findOneByOrFail({ name })).id);
  const create = (title: string, tagList: string[], headers = ALICE) =>
    t.request('/conduit/articles', { method: 'POST', json: { title, body: `About ${title}`, tagList }, headers });

  it('creating an article with an existing and a new tag records the article, the new tag and both links', async () => {
    const response = await create('Audit trails', ['nestjs', 'audit']);
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: number };
    const intent = await intentOf('article.created');
    expectEveryWriteRecorded(intent.changes);
    const article = intent.changes.find((change) => change.entity === 'Article')!;
    expect(article).toMatchObject({ id: String(id), operation: 'insert' });
    expect(article.fields['title']).toEqual({ from: null, to: 'Audit trails' });
    const tags = article.fields['tags'] as { added: string[]; removed: string[] };
    expect([...tags.added].sort()).toEqual([await tagId('nestjs'), await tagId('audit')].sort());
    expect(tags.removed).toEqual([]);
    expect(intent.changes.filter((change) => change.entity === 'Tag')).toEqual([
      expect.objectContaining({ id: await tagId('audit'), operation: 'insert' }),
    ]);
  });

  it('changing the tags of an article records the links added and removed', async () => {
    await t.seed(() => create('Retention', ['nestjs', 'ops']));
    writes.length = 0;
    const response = await t.request('/conduit/articles/retention', { method: 'PUT', json: { title: 'Retention rules', tagList: ['nestjs', 'compliance'] }, headers: ALICE });
    expect(response.status).toBe(200);
    const intent = await intentOf('article.updated');
    expectEveryWriteRecorded(intent.changes);
    const article = intent.changes.find((change) => change.entity === 'Article')!;
    expect(article).toMatchObject({ id: String(await articleId('retention')), operation: 'update' });
    expect(article.fields['title']).toEqual({ from: 'Retention', to: 'Retention rules' });
    expect(article.fields['tags']).toEqual({ added: [await tagId('compliance')], removed: [await tagId('ops')] });
  });

  it('favouriting and unfavouriting record the link on the member, and the article’s history shows them', async () => {
    await t.seed(() => create('Favourites', ['nestjs']));
    const id = String(await articleId('favourites'));
    writes.length = 0;
    expect((await t.request('/conduit/articles/favourites/favorite', { method: 'POST', headers: BOB })).status).toBe(201);
    const favourited = await intentOf('article.favorited');
    expectEveryWriteRecorded(favourited.changes);
    expect(favourited.changes).toEqual([
      { entity: 'Member', id: '2', operation: 'update', fields: { favorites: { added: [id], removed: [] } } },
    ]);
    await t.clearAudit();
    writes.length = 0;
    expect((await t.request('/conduit/articles/favourites/favorite', { method: 'DELETE', headers: BOB })).status).toBe(200);
    const unfavourited = await intentOf('article.unfavorited');
    expectEveryWriteRecorded(unfavourited.changes);
    expect(unfavourited.changes).toEqual([
      { entity: 'Member', id: '2', operation: 'update', fields: { favorites: { added: [], removed: [id] } } },
    ]);
    const history = await t.audit.history({ type: 'Article', id });
    expect(history.map((event) => event.action)).toEqual(expect.arrayContaining(['article.unfavorited']));
  });

  it('following a member records the link', async () => {
    expect((await t.request('/conduit/profiles/bob/follow', { method: 'POST', headers: ALICE })).status).toBe(201);
    const intent = await intentOf('profile.followed');
    expectEveryWriteRecorded(intent.changes);
    expect(intent.changes).toEqual([{ entity: 'Member', id: '1', operation: 'update', fields: { following: { added: ['2'], removed: [] } } }]);
  });

  it('commenting and deleting a comment record the comment with its article and author', async () => {
    await t.seed(() => create('Comments', ['nestjs']));
    const article = String(await articleId('comments'));
    writes.length = 0;
    const created = await t.request('/conduit/articles/comments/comments', { method: 'POST', json: { body: 'Nice' }, headers: BOB });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: number };
    const intent = await intentOf('comment.created');
    expectEveryWriteRecorded(intent.changes);
    expect(intent.changes).toEqual([
      expect.objectContaining({ entity: 'Comment', id: String(id), operation: 'insert', fields: expect.objectContaining({ body: { from: null, to: 'Nice' } }) }),
    ]);
    await t.clearAudit();
    writes.length = 0;
    expect((await t.request(`/conduit/articles/comments/comments/${id}`, { method: 'DELETE', headers: BOB })).status).toBe(204);
    const deleted = await intentOf('comment.deleted');
    expectEveryWriteRecorded(deleted.changes);
    expect(deleted.changes).toHaveLength(1);
    expect(deleted.changes[0]).toMatchObject({ entity: 'Comment', id: String(id), operation: 'delete' });
    // The relations' before-values, although the app loaded the comment without them.
    expect(JSON.stringify(deleted.changes[0]!.fields)).toMatch(new RegExp(`"article":\\{"from":"?${article}"?`));
    expect(JSON.stringify(deleted.changes[0]!.fields)).toMatch(/"author":\{"from":"?2"?/);
  });

  it('deleting an article records its tag links and the comments the database removed with it', async () => {
    await t.seed(async () => {
      await create('Doomed', ['nestjs', 'doomed']);
      const article = await t.dataSource.getRepository(Article).findOneByOrFail({ slug: 'doomed' });
      await t.dataSource.getRepository(Comment).save([
        { body: 'first', article, author: { id: 1 } as Member },
        { body: 'second', article, author: { id: 2 } as Member },
      ]);
    });
    const id = String(await articleId('doomed'));
    const commentIds = (await t.dataSource.getRepository(Comment).find({ where: { article: { id: Number(id) } } })).map((comment) => String(comment.id)).sort();
    writes.length = 0;
    expect((await t.request('/conduit/articles/doomed', { method: 'DELETE', headers: ALICE })).status).toBe(204);
    const intent = await intentOf('article.deleted');
    expectEveryWriteRecorded(intent.changes);
    const article = intent.changes.find((change) => change.entity === 'Article')!;
    expect(article).toMatchObject({ id, operation: 'delete' });
    expect(article.fields['title']).toEqual({ from: 'Doomed', to: null });
    expect(JSON.stringify(article.fields)).toMatch(/"author":\{"from":"?1"?/); // its author
    expect(article.fields['tags']).toEqual({ added: [], removed: expect.arrayContaining([await tagId('nestjs'), await tagId('doomed')]) });
    const comments = intent.changes.filter((change) => change.entity === 'Comment');
    expect(comments.map((change) => change.id).sort()).toEqual(commentIds);
    expect(comments.every((change) => change.operation === 'delete')).toBe(true);
    expect(await t.dataSource.getRepository(Comment).countBy({ id: Number(commentIds[0]) })).toBe(0);
  });
});
