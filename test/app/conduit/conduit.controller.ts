import { Body, Controller, Delete, HttpCode, NotFoundException, Param, Post, Put, Req, UseGuards } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, type Repository } from 'typeorm';
import { Audited } from '../../../lib/index.js';
import { TokenGuard } from '../token.guard.js';
import { Article, Comment, Member, Tag } from './conduit.entities.js';

interface AuthedRequest {
  user: { id: number };
}

/** The mutating endpoints of the Conduit-shaped app, written as such apps write them. */
@Controller('conduit')
@UseGuards(TokenGuard)
export class ConduitController {
  constructor(
    @InjectRepository(Member) private readonly members: Repository<Member>,
    @InjectRepository(Article) private readonly articles: Repository<Article>,
    @InjectRepository(Comment) private readonly comments: Repository<Comment>,
    @InjectRepository(Tag) private readonly tags: Repository<Tag>,
  ) {}

  private async article(slug: string, relations: { tags?: true } = {}): Promise<Article> {
    const article = await this.articles.findOne({ where: { slug }, relations });
    if (!article) throw new NotFoundException(`Article ${slug} not found`);
    return article;
  }

  private async tagsNamed(names: string[]): Promise<Tag[]> {
    const existing = await this.tags.findBy({ name: In(names) });
    return names.map((name) => existing.find((tag) => tag.name === name) ?? this.tags.create({ name }));
  }

  @Post('articles')
  @Audited('article.created')
  async create(@Req() request: AuthedRequest, @Body() input: { title: string; body: string; tagList: string[] }) {
    const article = this.articles.create({
      slug: input.title.toLowerCase().replace(/\W+/g, '-'),
      title: input.title,
      body: input.body,
      author: { id: request.user.id } as Member,
      tags: await this.tagsNamed(input.tagList),
    });
    const saved = await this.articles.save(article);
    return { id: saved.id, slug: saved.slug };
  }

  @Put('articles/:slug')
  @Audited('article.updated')
  async update(@Param('slug') slug: string, @Body() input: { title?: string; tagList?: string[] }) {
    const article = await this.article(slug, { tags: true });
    if (input.title) article.title = input.title;
    if (input.tagList) article.tags = await this.tagsNamed(input.tagList);
    await this.articles.save(article);
    return { id: article.id };
  }

  @Delete('articles/:slug')
  @Audited('article.deleted')
  @HttpCode(204)
  async remove(@Param('slug') slug: string) {
    const article = await this.article(slug);
    await this.articles.remove(article);
  }

  @Post('articles/:slug/favorite')
  @Audited('article.favorited')
  async favorite(@Req() request: AuthedRequest, @Param('slug') slug: string) {
    const article = await this.article(slug);
    const member = await this.members.findOneOrFail({ where: { id: request.user.id }, relations: { favorites: true } });
    member.favorites.push(article);
    await this.members.save(member);
    return { favorited: true };
  }

  @Delete('articles/:slug/favorite')
  @Audited('article.unfavorited')
  async unfavorite(@Req() request: AuthedRequest, @Param('slug') slug: string) {
    const article = await this.article(slug);
    const member = await this.members.findOneOrFail({ where: { id: request.user.id }, relations: { favorites: true } });
    member.favorites = member.favorites.filter((favorite) => favorite.id !== article.id);
    await this.members.save(member);
    return { favorited: false };
  }

  @Post('profiles/:username/follow')
  @Audited('profile.followed')
  async follow(@Req() request: AuthedRequest, @Param('username') username: string) {
    const followed = await this.members.findOneByOrFail({ username });
    const member = await this.members.findOneOrFail({ where: { id: request.user.id }, relations: { following: true } });
    member.following.push(followed);
    await this.members.save(member);
    return { following: true };
  }

  @Post('articles/:slug/comments')
  @Audited('comment.created')
  async comment(@Req() request: AuthedRequest, @Param('slug') slug: string, @Body() input: { body: string }) {
    const article = await this.article(slug);
    const saved = await this.comments.save(this.comments.create({ body: input.body, article, author: { id: request.user.id } as Member }));
    return { id: saved.id };
  }

  @Delete('articles/:slug/comments/:id')
  @Audited('comment.deleted')
  @HttpCode(204)
  async uncomment(@Param('slug') slug: string, @Param('id') id: string) {
    const article = await this.article(slug);
    // As such apps do: the comment is loaded without its relations.
    const comment = await this.comments.findOneBy({ id: Number(id), article: { id: article.id } });
    if (!comment) throw new NotFoundException(`Comment ${id} not found`);
    await this.comments.remove(comment);
  }
}
