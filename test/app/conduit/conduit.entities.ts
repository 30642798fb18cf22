import { Column, Entity, JoinTable, ManyToMany, ManyToOne, OneToMany, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';

/**
 * A blogging app shaped like the well-known "Conduit" (RealWorld) example: members who
 * follow each other and favourite articles, articles with tags, comments removed with
 * their article by the database (`ON DELETE CASCADE`).
 */
@Entity('conduit_member')
export class Member {
  @PrimaryColumn()
  id!: number;

  @Column()
  username!: string;

  @ManyToMany(() => Member, (member) => member.followers)
  @JoinTable({ name: 'conduit_follow', joinColumn: { name: 'follower_id' }, inverseJoinColumn: { name: 'followed_id' } })
  following!: Member[];

  @ManyToMany(() => Member, (member) => member.following)
  followers!: Member[];

  @ManyToMany(() => Article, (article) => article.favoritedBy)
  @JoinTable({ name: 'conduit_favorite', joinColumn: { name: 'member_id' }, inverseJoinColumn: { name: 'article_id' } })
  favorites!: Article[];
}

@Entity('conduit_tag')
export class Tag {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  name!: string;
}

@Entity('conduit_article')
export class Article {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  slug!: string;

  @Column()
  title!: string;

  @Column({ type: 'text' })
  body!: string;

  @ManyToOne(() => Member, { nullable: false })
  author!: Member;

  @ManyToMany(() => Tag, { cascade: ['insert'] })
  @JoinTable({ name: 'conduit_article_tag', joinColumn: { name: 'article_id' }, inverseJoinColumn: { name: 'tag_id' } })
  tags!: Tag[];

  @ManyToMany(() => Member, (member) => member.favorites)
  favoritedBy!: Member[];

  @OneToMany(() => Comment, (comment) => comment.article)
  comments!: Comment[];
}

@Entity('conduit_comment')
export class Comment {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  body!: string;

  @ManyToOne(() => Article, (article) => article.comments, { nullable: false, onDelete: 'CASCADE' })
  article!: Article;

  @ManyToOne(() => Member, { nullable: false })
  author!: Member;
}

export const CONDUIT_ENTITIES = [Member, Tag, Article, Comment];
