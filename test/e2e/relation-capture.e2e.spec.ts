import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditChange } from '../../lib/index.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { Article, BLOG_ENTITIES, Comment, Tag } from '../app/blog/blog.entities.js';
import { User } from '../app/user.entity.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

const EDITOR = { type: 'user', id: 'editor' } as const;
const BOUND = 8;

/** Relation ids in a stable order, so that a comparison does not depend on the order TypeORM wrote links in. */
function normalised(change: AuditChange): AuditChange {
  const fields = Object.fromEntries(
    Object.entries(change.fields).map(([name, value]) =>
      'added' in value && 'removed' in value ? [name, { added: [...value.added].sort(), removed: [...value.removed].sort() }] : [name, value],
    ),
  );
  return { ...change, fields };
}

const ids = (...values: Array<{ id: number }>): string[] => values.map((value) => String(value.id)).sort();

describe.each(databases())('relations, deletes and cascades on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await createTestApp({ db, adapter: 'express', entities: BLOG_ENTITIES, audit: { maxCriteriaRows: BOUND } });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
  });

  const users = () => t.dataSource.getRepository(User);
  const articles = () => t.dataSource.getRepository(Article);
  const comments = () => t.dataSource.getRepository(Comment);
  const tags = () => t.dataSource.getRepository(Tag);
  const job = <T>(fn: () => Promise<T>) => t.audit.runAs(EDITOR, fn);
  /** Every change of every row written, relation ids sorted. */
  const changes = async (): Promise<AuditChange[]> => (await t.rows()).flatMap((row) => row.changes ?? []).map(normalised);
  const changeOf = async (entity: string, id: { id: number }): Promise<AuditChange | undefined> =>
    (await changes()).find((change) => change.entity === entity && change.id === String(id.id));

  const seedAuthor = (email = `a-${Math.random().toString(36).slice(2, 8)}@x.io`) => t.seed(() => users().save({ email }));
  const seedTags = (...names: string[]) => t.seed(() => tags().save(names.map((name) => ({ name }))));
  const seedArticle = (values: Partial<Article>) => t.seed(() => articles().save({ title: 'Hello', ...values }));

  describe('many-to-many links', () => {
    it('an article created with existing tags: its insert carries the links', async () => {
      const author = await seedAuthor();
      const [news, tech] = await seedTags('news', 'tech');
      const article = await job(() => articles().save({ title: 'First', author, tags: [news!, tech!] }));
      const all = await changes();
      expect(all).toEqual([
        {
          entity: 'Article',
          id: String(article.id),
          operation: 'insert',
          fields: {
            id: { from: null, to: article.id },
            title: { from: null, to: 'First' },
            body: { from: null, to: '' },
            author: { from: null, to: author.id },
            tags: { added: ids(news!, tech!), removed: [] },
          },
        },
      ]);
    });

    it('an article created with new tags: the tags are inserted and linked', async () => {
      const article = await job(() => articles().save({ title: 'Second', tags: [{ name: 'fresh' } as Tag, { name: 'hot' } as Tag] }));
      const saved = await articles().findOneOrFail({ where: { id: article.id }, relations: { tags: true } });
      expect(saved.tags).toHaveLength(2);
      const all = await changes();
      expect(all.filter((change) => change.entity === 'Tag').map((change) => [change.operation, change.id]).sort()).toEqual(
        saved.tags!.map((tag) => ['insert', String(tag.id)]).sort(),
      );
      expect(all.find((change) => change.entity === 'Article')).toMatchObject({
        operation: 'insert',
        fields: { title: { from: null, to: 'Second' }, tags: { added: ids(...saved.tags!), removed: [] } },
      });
    });

    it('an article created, then favourited through a relation query builder in the same unit: one insert with the link', async () => {
      const reader = await seedAuthor();
      const article = await job(async () => {
        const created = await articles().save({ title: 'Liked' });
        await articles().createQueryBuilder().relation(Article, 'favoritedBy').of(created).add(reader);
        return created;
      });
      expect(await changes()).toEqual([
        {
          entity: 'Article',
          id: String(article.id),
          operation: 'insert',
          fields: {
            id: { from: null, to: article.id },
            title: { from: null, to: 'Liked' },
            body: { from: null, to: '' },
            favoritedBy: { added: ids(reader), removed: [] },
          },
        },
      ]);
    });

    it('links added and removed by an update are recorded on the article', async () => {
      const [a, b, c] = await seedTags('a', 'b', 'c');
      const article = await seedArticle({ tags: [a!, b!] });
      await job(async () => {
        article.tags = [b!, c!];
        article.title = 'Retitled';
        await articles().save(article);
      });
      expect(await changes()).toEqual([
        {
          entity: 'Article',
          id: String(article.id),
          operation: 'update',
          fields: { title: { from: 'Hello', to: 'Retitled' }, tags: { added: ids(c!), removed: ids(a!) } },
        },
      ]);
    });
  });

  describe('deletes', () => {
    it('remove() of an article records its author and the tags it was linked to', async () => {
      const author = await seedAuthor();
      const [a, b] = await seedTags('x', 'y');
      const article = await seedArticle({ title: 'Doomed', author, tags: [a!, b!] });
      const id = article.id;
      // As an app usually does it: loaded without its relations.
      await job(async () => articles().remove(await articles().findOneByOrFail({ id })));
      expect(await changeOf('Article', { id })).toEqual({
        entity: 'Article',
        id: String(id),
        operation: 'delete',
        fields: {
          id: { from: id, to: null },
          title: { from: 'Doomed', to: null },
          body: { from: '', to: null },
          author: { from: author.id, to: null },
          tags: { added: [], removed: ids(a!, b!) },
        },
      });
    });

    it('remove() of a comment records the article and author it belonged to', async () => {
      const author = await seedAuthor();
      const article = await seedArticle({ author });
      const comment = await t.seed(() => comments().save({ body: 'nice', article, author }));
      await job(async () => comments().remove(await comments().findOneByOrFail({ id: comment.id })));
      expect(await changes()).toEqual([
        {
          entity: 'Comment',
          id: String(comment.id),
          operation: 'delete',
          fields: { id: { from: comment.id, to: null }, body: { from: 'nice', to: null }, article: { from: article.id, to: null }, author: { from: author.id, to: null } },
        },
      ]);
    });

    it('remove() of a comment loaded with its relations records them as passed in', async () => {
      const author = await seedAuthor();
      const article = await seedArticle({ author });
      const comment = await t.seed(() => comments().save({ body: 'loaded', article, author }));
      await job(async () => comments().remove(await comments().findOneOrFail({ where: { id: comment.id }, relations: { article: true, author: true } })));
      expect(await changeOf('Comment', comment)).toMatchObject({ operation: 'delete', fields: { article: { from: article.id, to: null }, author: { from: author.id, to: null } } });
    });

    it('delete by criteria of an article records the tags it was linked to', async () => {
      const [a] = await seedTags('z');
      const article = await seedArticle({ title: 'Criteria', tags: [a!] });
      await job(() => articles().delete({ id: article.id }));
      expect(await changeOf('Article', article)).toMatchObject({ operation: 'delete', fields: { title: { from: 'Criteria', to: null }, tags: { added: [], removed: ids(a!) } } });
    });

    it('links added, then the article deleted, in one unit: only the links it had before are removed', async () => {
      const [a, b] = await seedTags('p', 'q');
      const article = await seedArticle({ tags: [a!] });
      const id = article.id;
      await job(async () => {
        article.tags = [a!, b!];
        await articles().save(article);
        await articles().remove(article);
      });
      expect(await changeOf('Article', { id })).toMatchObject({ operation: 'delete', fields: { tags: { added: [], removed: ids(a!) } } });
    });
  });

  describe('redaction of inserts and deletes', () => {
    it('a secret field of an insert has no previous value to mask; of a delete, no next one', async () => {
      const user = await job(() => users().save({ email: 'secret@x.io', password: 'hunter2' }));
      const id = user.id;
      await job(() => users().remove(user));
      const [inserted, deleted] = await changes();
      expect(inserted).toMatchObject({ operation: 'insert', fields: { password: { from: null, to: '[REDACTED]' } } });
      expect(deleted).toMatchObject({ operation: 'delete', id: String(id), fields: { password: { from: '[REDACTED]', to: null } } });
      expect(JSON.stringify(await t.rows())).not.toContain('hunter2');
    });
  });

  describe('database cascades', () => {
    it('remove() of an article records the comments the database deletes with it', async () => {
      const author = await seedAuthor();
      const article = await seedArticle({ author });
      const [first, second] = await t.seed(() =>
        comments().save([
          { body: 'one', article, author },
          { body: 'two', article, author: null },
        ]),
      );
      await job(async () => articles().remove(await articles().findOneByOrFail({ id: article.id })));
      expect(await comments().countBy({ id: first!.id })).toBe(0);
      expect(await changeOf('Comment', first!)).toEqual({
        entity: 'Comment',
        id: String(first!.id),
        operation: 'delete',
        fields: { id: { from: first!.id, to: null }, body: { from: 'one', to: null }, article: { from: article.id, to: null }, author: { from: author.id, to: null } },
      });
      expect(await changeOf('Comment', second!)).toMatchObject({ operation: 'delete', fields: { body: { from: 'two', to: null }, article: { from: article.id, to: null } } });
    });

    it('delete by criteria of a user: cascades of cascades, SET NULL and links on both sides', async () => {
      const writer = await seedAuthor();
      const reader = await seedAuthor();
      const [tag] = await seedTags('deep');
      const own = await seedArticle({ title: 'Own', author: writer, tags: [tag!] });
      const other = await seedArticle({ title: 'Other', author: reader, favoritedBy: [writer] });
      const [onOwn, onOther] = await t.seed(() =>
        comments().save([
          { body: 'reply on own', article: own, author: reader },
          { body: 'by writer', article: other, author: writer },
        ]),
      );
      await t.seed(() => users().save({ ...reader, following: [writer] }));
      await job(() => users().delete({ id: writer.id }));

      const all = await changes();
      expect(all.find((change) => change.entity === 'User' && change.id === String(writer.id))).toMatchObject({ operation: 'delete' });
      // ON DELETE CASCADE: the writer's article, and the comment on it.
      expect(await changeOf('Article', own)).toMatchObject({
        operation: 'delete',
        fields: { title: { from: 'Own', to: null }, author: { from: writer.id, to: null }, tags: { added: [], removed: ids(tag!) } },
      });
      expect(await changeOf('Comment', onOwn!)).toMatchObject({ operation: 'delete', fields: { body: { from: 'reply on own', to: null }, author: { from: reader.id, to: null } } });
      // ON DELETE SET NULL: the writer's comment on another article stays, anonymous.
      expect(await changeOf('Comment', onOther!)).toEqual({
        entity: 'Comment',
        id: String(onOther!.id),
        operation: 'update',
        fields: { author: { from: writer.id, to: null } },
      });
      // Links the database removed with the writer, recorded on the owning side.
      expect(await changeOf('Article', other)).toEqual({
        entity: 'Article',
        id: String(other.id),
        operation: 'update',
        fields: { favoritedBy: { added: [], removed: ids(writer) } },
      });
      expect(await changeOf('User', reader)).toEqual({
        entity: 'User',
        id: String(reader.id),
        operation: 'update',
        fields: { following: { added: [], removed: ids(writer) } },
      });
      expect(all.filter((change) => change.partial)).toEqual([]);
    });

    it('past maxCriteriaRows, the rows read are recorded and the rest is a partial summary with a count', async () => {
      const article = await seedArticle({ title: 'Popular' });
      await t.seed(() => comments().save(Array.from({ length: BOUND + 2 }, (_, i) => ({ body: `c${i}`, article }))));
      await job(async () => articles().remove(await articles().findOneByOrFail({ id: article.id })));
      const all = await changes();
      expect(all.filter((change) => change.entity === 'Comment' && change.id !== null)).toHaveLength(BOUND);
      expect(all.filter((change) => change.partial)).toEqual([{ entity: 'Comment', id: null, operation: 'delete', fields: {}, partial: true, count: 2 }]);
      expect(await comments().countBy({ article: { id: article.id } })).toBe(0);
    });

    it('a cascade in a rolled-back transaction leaves no trace', async () => {
      const article = await seedArticle({ title: 'Kept' });
      const comment = await t.seed(() => comments().save({ body: 'stays', article }));
      await job(() =>
        t.dataSource
          .transaction(async (manager) => {
            await manager.remove(await manager.findOneByOrFail(Article, { id: article.id }));
            throw new Error('abort');
          })
          .catch(() => undefined),
      );
      expect(await t.rows()).toHaveLength(0);
      expect(await comments().countBy({ id: comment.id })).toBe(1);
    });
  });
});
