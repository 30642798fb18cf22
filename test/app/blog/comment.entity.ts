import { Column, Entity, ManyToOne, PrimaryGeneratedColumn, type Relation } from 'typeorm';
import { User } from '../user.entity.js';
import { Article } from './article.entity.js';

/** A comment: the database deletes it with its article and keeps it, anonymous, when its author goes. */
@Entity('blog_comments')
export class Comment {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 2000 })
  body!: string;

  @ManyToOne(() => Article, (article) => article.comments, { nullable: false, onDelete: 'CASCADE' })
  article?: Relation<Article>;

  @ManyToOne(() => User, { nullable: true, onDelete: 'SET NULL' })
  author?: User | null;
}
