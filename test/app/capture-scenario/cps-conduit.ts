import { Body, Controller, Delete, Headers, HttpCode, NotFoundException, Param, ParseIntPipe, Post, Put } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import {
  Column,
  CreateDateColumn,
  Entity,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
  type Repository,
} from 'typeorm';
import { Audited } from '../../../lib/index.js';

/**
 * A RealWorld ("Conduit") API written the way its common NestJS + TypeORM implementations
 * are: default join table names, a favourites counter kept next to the link, the article
 * deleted by criteria (`delete({ slug })`), comments removed with their article by the
 * database.
 */
@Entity('cps_user')
export class CpsUser {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  username!: string;

  @Column({ default: '' })
  bio!: string;

  @ManyToMany(() => CpsUser)
  @JoinTable({ name: 'cps_user_following' })
  following!: CpsUser[];

  @ManyToMany(() => CpsArticle)
  @JoinTable({ name: 'cps_user_favorites' })
  favorites!: CpsArticle[];
}

@Entity('cps_tag')
export class CpsTag {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  name!: string;
}

@Entity('cps_article')
export class CpsArticle {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  slug!: string;

  @Column()
  title!: string;

  @Column({ default: '' })
  description!: string;

  @CreateDateColumn()
  createdAt!: Date;

  @UpdateDateColumn()
  updatedAt!: Date;

  @Column({ default: 0 })
  favoriteCount!: number;

  @ManyToOne(() => CpsUser, { eager: true })
  author!: CpsUser;

  @ManyToMany(() => CpsTag, { cascade: ['insert'] })
  @JoinTable({ name: 'cps_article_tags' })
  tags!: CpsTag[];

  @OneToMany(() => CpsComment, (comment) => comment.article)
  comments!: CpsComment[];
}

@Entity('cps_comment')
export class CpsComment {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  body!: string;

  @ManyToOne(() => CpsArticle, (article) => article.comments, { onDelete: 'CASCADE' })
  article!: CpsArticle;

  @ManyToOne(() => CpsUser)
  author!: CpsUser;
}

export const CPS_CONDUIT_ENTITIES = [CpsUser, CpsTag, CpsArticle, CpsComment];

const slugOf = (title: string) => title.toLowerCase().replace(/\W+/g, '-');

@Controller('cps')
export class CpsConduitController {
  constructor(
    @InjectRepository(CpsUser) private readonly users: Repository<CpsUser>,
    @InjectRepository(CpsTag) private readonly tags: Repository<CpsTag>,
    @InjectRepository(CpsArticle) private readonly articles: Repository<CpsArticle>,
    @InjectRepository(CpsComment) private readonly comments: Repository<CpsComment>,
  ) {}

  private me(user: string | undefined): Promise<CpsUser> {
    return this.users.findOneByOrFail({ username: user ?? 'nobody' });
  }

  private async tagList(names: string[]): Promise<CpsTag[]> {
    const out: CpsTag[] = [];
    for (const name of names) out.push((await this.tags.findOneBy({ name })) ?? this.tags.create({ name }));
    return out;
  }

  private async article(slug: string, relations: Record<string, true> = {}): Promise<CpsArticle> {
    const found = await this.articles.findOne({ where: { slug }, relations });
    if (!found) throw new NotFoundException(slug);
    return found;
  }

  @Post('articles')
  @Audited('cps.article.created')
  async create(@Headers('x-user') user: string, @Body() body: { title: string; description: string; tagList: string[] }): Promise<CpsArticle> {
    const article = this.articles.create({ slug: slugOf(body.title), title: body.title, description: body.description });
    article.author = await this.me(user);
    article.tags = await this.tagList(body.tagList);
    return this.articles.save(article);
  }

  @Put('articles/:slug')
  @Audited('cps.article.updated')
  async update(@Param('slug') slug: string, @Body() body: { title?: string; description?: string; tagList?: string[] }): Promise<CpsArticle> {
    const article = await this.article(slug, { tags: true });
    if (body.title !== undefined) article.title = body.title;
    if (body.description !== undefined) article.description = body.description;
    if (body.tagList) article.tags = await this.tagList(body.tagList);
    return this.articles.save(article);
  }

  @Post('articles/:slug/favorite')
  @Audited('cps.article.favorited')
  async favorite(@Headers('x-user') username: string, @Param('slug') slug: string): Promise<CpsArticle> {
    let article = await this.article(slug);
    const user = await this.users.findOneOrFail({ where: { username }, relations: { favorites: true } });
    if (!user.favorites.some((a) => a.id === article.id)) {
      user.favorites.push(article);
      article.favoriteCount++;
      await this.users.save(user);
      article = await this.articles.save(article);
    }
    return article;
  }

  @Delete('articles/:slug/favorite')
  @Audited('cps.article.unfavorited')
  async unfavorite(@Headers('x-user') username: string, @Param('slug') slug: string): Promise<CpsArticle> {
    let article = await this.article(slug);
    const user = await this.users.findOneOrFail({ where: { username }, relations: { favorites: true } });
    const index = user.favorites.findIndex((a) => a.id === article.id);
    if (index >= 0) {
      user.favorites.splice(index, 1);
      article.favoriteCount--;
      await this.users.save(user);
      article = await this.articles.save(article);
    }
    return article;
  }

  @Post('profiles/:username/follow')
  @Audited('cps.profile.followed')
  async follow(@Headers('x-user') me: string, @Param('username') username: string): Promise<{ ok: true }> {
    const user = await this.users.findOneOrFail({ where: { username: me }, relations: { following: true } });
    const other = await this.users.findOneByOrFail({ username });
    user.following.push(other);
    await this.users.save(user);
    return { ok: true };
  }

  @Delete('profiles/:username/follow')
  @Audited('cps.profile.unfollowed')
  async unfollow(@Headers('x-user') me: string, @Param('username') username: string): Promise<{ ok: true }> {
    const user = await this.users.findOneOrFail({ where: { username: me }, relations: { following: true } });
    user.following = user.following.filter((u) => u.username !== username);
    await this.users.save(user);
    return { ok: true };
  }

  @Post('articles/:slug/comments')
  @Audited('cps.comment.created')
  async comment(@Headers('x-user') me: string, @Param('slug') slug: string, @Body() body: { body: string }): Promise<CpsComment> {
    const article = await this.article(slug, { comments: true });
    const comment = this.comments.create({ body: body.body, author: await this.me(me) });
    article.comments.push(comment);
    await this.comments.save(comment);
    await this.articles.save(article);
    return comment;
  }

  @Delete('articles/:slug/comments/:id')
  @HttpCode(204)
  @Audited('cps.comment.deleted')
  async uncomment(@Param('slug') slug: string, @Param('id', ParseIntPipe) id: number): Promise<void> {
    const article = await this.article(slug, { comments: true });
    const index = article.comments.findIndex((c) => c.id === id);
    if (index < 0) throw new NotFoundException(String(id));
    article.comments.splice(index, 1);
    await this.comments.delete(id);
    await this.articles.save(article);
  }

  @Delete('articles/:slug')
  @HttpCode(204)
  @Audited('cps.article.deleted')
  async remove(@Param('slug') slug: string): Promise<void> {
    await this.articles.delete({ slug });
  }

  @Delete('articles-by-entity/:slug')
  @HttpCode(204)
  @Audited('cps.article.removed')
  async removeEntity(@Param('slug') slug: string): Promise<void> {
    await this.articles.remove(await this.article(slug));
  }

  @Put('articles/:slug/same')
  @Audited('cps.article.resaved')
  async resave(@Param('slug') slug: string): Promise<CpsArticle> {
    const article = await this.article(slug, { tags: true, comments: true });
    return this.articles.save(article);
  }
}
