import { Column, Entity, JoinTable, ManyToMany, ManyToOne, OneToMany, PrimaryGeneratedColumn, type Relation } from 'typeorm';
import { User } from '../user.entity.js';
import { Comment } from './comment.entity.js';
import { Tag } from './tag.entity.js';

/** An article: deleting its author deletes it (and, through it, its comments and links). */
@Entity('blog_articles')
export class Article {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 200 })
  title!: string;

  @Column({ type: 'varchar', length: 2000, default: '' })
  body!: string;

  @ManyToOne(() => User, { nullable: true, onDelete: 'CASCADE' })
  author?: User | null;

  /** Tags are created with the article when they are new. */
  @ManyToMany(() => Tag, { cascade: ['insert'] })
  @JoinTable({ name: 'blog_article_tags' })
  tags?: Tag[];

  @ManyToMany(() => User)
  @JoinTable({ name: 'blog_article_favorites' })
  favoritedBy?: User[];

  @OneToMany(() => Comment, (comment) => comment.article)
  comments?: Relation<Comment>[];
}
