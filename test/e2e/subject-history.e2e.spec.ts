import { Controller, Delete, Param, ParseIntPipe, Post } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, In, JoinTable, ManyToMany, PrimaryGeneratedColumn } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditLogEntity, AuditSubjectEntity, type AuditEvent } from '../../lib/index.js';
import { AuditWriter } from '../../lib/storage/audit.writer.js';
import { createTestApp, type TestApp } from '../app/create-test-app.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';

@Entity('subject_articles')
class Article {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  title!: string;

  @Column({ type: 'int', default: 0 })
  favoritesCount!: number;
}

/** A user of the app: favourites are recorded on this side of the link (it owns the junction table). */
@Entity('subject_readers')
class Reader {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  name!: string;

  @ManyToMany(() => Article)
  @JoinTable({ name: 'subject_reader_favorites' })
  favorites!: Article[];
}

@Controller('subject')
class FavoritesController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Counts the favourite on the article and links it on the reader's side; the event's target is the reader. */
  @Post('readers/:reader/favorites/:article')
  @Audited('article.favorited', { target: ({ params }) => ({ type: 'Reader', id: params['reader']! }) })
  async favorite(@Param('reader', ParseIntPipe) readerId: number, @Param('article', ParseIntPipe) articleId: number): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const article = await manager.findOneByOrFail(Article, { id: articleId });
      article.favoritesCount += 1;
      await manager.save(article);
      const reader = await manager.findOneOrFail(Reader, { where: { id: readerId }, relations: { favorites: true } });
      reader.favorites.push(article);
      await manager.save(reader);
    });
  }

  /** Only the link, no target given: the one instance changed (the reader) is the target. */
  @Delete('readers/:reader/favorites/:article')
  @Audited('article.unfavorited')
  async unfavorite(@Param('reader', ParseIntPipe) readerId: number, @Param('article', ParseIntPipe) articleId: number): Promise<void> {
    const readers = this.dataSource.getRepository(Reader);
    const reader = await readers.findOneOrFail({ where: { id: readerId }, relations: { favorites: true } });
    reader.favorites = reader.favorites.filter((article) => article.id !== articleId);
    await readers.save(reader);
  }

  /** Many instances created one by one in a transaction (more than a unit keeps in memory), no target given. */
  @Post('articles/import/:count')
  @Audited('article.imported')
  async import(@Param('count', ParseIntPipe) count: number): Promise<number[]> {
    return this.dataSource.transaction(async (manager) => {
      const ids: number[] = [];
      for (let i = 0; i < count; i++) ids.push((await manager.save(manager.create(Article, { title: `Imported ${i}` }))).id);
      return ids;
    });
  }

  /** Two instances changed, no target given: no target. */
  @Post('articles/:a/swap-titles/:b')
  @Audited('article.titles.swapped')
  async swap(@Param('a', ParseIntPipe) a: number, @Param('b', ParseIntPipe) b: number): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const [first, second] = [await manager.findOneByOrFail(Article, { id: a }), await manager.findOneByOrFail(Article, { id: b })];
      [first.title, second.title] = [second.title, first.title];
      await manager.save([first, second]);
    });
  }
}

describe.each(databases())('history of every instance an event touches, on %s', (kind) => {
  let db: TestDatabase;
  let t: TestApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    // Two changes per event at most: a unit keeps ten changes in memory, the rest only in the journal.
    t = await createTestApp({
      db,
      adapter: 'express',
      entities: [Article, Reader],
      controllers: [FavoritesController],
      audit: { maxChangesPerEvent: 2 },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await t.clearAudit();
    await t.dataSource.getRepository(AuditSubjectEntity).clear();
  });

  const articles = () => t.dataSource.getRepository(Article);
  const readers = () => t.dataSource.getRepository(Reader);
  const actions = (events: AuditEvent[]) => events.map((event) => event.action);
  const subjectRows = (rows: AuditLogEntity[]) =>
    t.dataSource.getRepository(AuditSubjectEntity).count({ where: { eventId: In(rows.map((row) => row.id)) } });

  it("an article's history shows a favourite whose event targets the reader (the link recorded on the reader's side)", async () => {
    const [article, other] = (await t.seed(() => articles().save(articles().create([{ title: 'Hello' }, { title: 'Other' }])))) as [Article, Article];
    const reader = await t.seed(() => readers().save(readers().create({ name: 'ada', favorites: [] })));

    expect((await t.request(`/subject/readers/${reader.id}/favorites/${article.id}`, { method: 'POST' })).status).toBe(201);
    expect((await t.request(`/subject/readers/${reader.id}/favorites/${article.id}`, { method: 'DELETE' })).status).toBe(200);

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.kind, row.targetType, row.targetId])).toEqual([
      ['article.favorited', 'intent', 'Reader', String(reader.id)],
      ['article.unfavorited', 'intent', 'Reader', String(reader.id)],
    ]);
    expect(rows[1]!.changes).toEqual([
      { entity: 'Reader', id: String(reader.id), operation: 'update', fields: { favorites: { added: [], removed: [String(article.id)] } } },
    ]);

    const history = await t.audit.history({ type: 'Article', id: article.id });
    expect(actions(history)).toEqual(['article.favorited', 'article.unfavorited']);
    expect(history.map((event) => event.id)).toEqual(rows.map((row) => row.id));
    // The same with the type as written by hand, and with the entity itself.
    expect(actions(await t.audit.history({ type: 'article', id: String(article.id) }))).toEqual(['article.favorited', 'article.unfavorited']);
    expect(actions(await t.audit.history(article))).toEqual(['article.favorited', 'article.unfavorited']);
    // The reader's history: its target; the other article's: nothing.
    expect(actions(await t.audit.history(reader))).toEqual(['article.favorited', 'article.unfavorited']);
    expect(await t.audit.history(other)).toEqual([]);
    // The limit keeps the order.
    expect(actions(await t.audit.history(article, { limit: 1 }))).toEqual(['article.favorited']);
  });

  it('an event stored again (a retry, a recovery) neither doubles its subject rows nor its history entry', async () => {
    const article = await t.seed(() => articles().save(articles().create({ title: 'Retried' })));
    const reader = await t.seed(() => readers().save(readers().create({ name: 'bob', favorites: [] })));
    expect((await t.request(`/subject/readers/${reader.id}/favorites/${article.id}`, { method: 'POST' })).status).toBe(201);
    const rows = await t.rows();
    expect(rows).toHaveLength(1);
    const stored = await subjectRows(rows);
    expect(stored).toBe(1); // Article (changed and linked); the reader is the target

    const writer = t.app.get(AuditWriter);
    await writer.write(rows.map((row) => Object.assign(new AuditLogEntity(), row)));
    await writer.write(rows, { manager: t.dataSource.manager });

    expect(await t.rows()).toHaveLength(1);
    expect(await subjectRows(rows)).toBe(stored);
    expect(actions(await t.audit.history(article))).toEqual(['article.favorited']);
  });

  it('the target of a handler that names none: the one instance it changed, else none', async () => {
    const [a, b] = (await t.seed(() => articles().save(articles().create([{ title: 'A' }, { title: 'B' }])))) as [Article, Article];
    const reader = await t.seed(() => readers().save(readers().create({ name: 'cy', favorites: [a] })));

    expect((await t.request(`/subject/readers/${reader.id}/favorites/${a.id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await t.request(`/subject/articles/${a.id}/swap-titles/${b.id}`, { method: 'POST' })).status).toBe(201);

    const rows = await t.rows();
    expect(rows.map((row) => [row.action, row.targetType, row.targetId])).toEqual([
      ['article.unfavorited', 'Reader', String(reader.id)],
      ['article.titles.swapped', null, null],
    ]);
    // An event without a target is in the history of each instance it changed.
    expect(actions(await t.audit.history(a))).toEqual(['article.unfavorited', 'article.titles.swapped']);
    expect(actions(await t.audit.history(b))).toEqual(['article.titles.swapped']);
  });

  it('no target either when the handler changed more instances than a unit keeps in memory, in any part of its event', async () => {
    const response = await t.request('/subject/articles/import/11', { method: 'POST' });
    expect(response.status).toBe(201);
    const ids = (await response.json()) as number[];

    const rows = (await t.rows()).filter((row) => row.action === 'article.imported');
    expect(rows.flatMap((row) => row.changes ?? []).map((change) => change.id).sort()).toEqual(ids.map(String).sort());
    expect(rows.map((row) => [row.targetType, row.targetId])).toEqual(rows.map(() => [null, null]));
    // Each article's history has the part of the event that created it.
    for (const id of [ids[0]!, ids[10]!]) {
      const history = await t.audit.history({ type: 'Article', id });
      expect(history.map((event) => event.changes.map((change) => change.id))).toEqual([expect.arrayContaining([String(id)])]);
    }
  });
});
