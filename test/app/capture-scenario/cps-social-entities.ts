import { Column, Entity, JoinTable, ManyToMany, ManyToOne, OneToMany, PrimaryGeneratedColumn } from 'typeorm';

/**
 * Members who follow each other (custom join column names), posts removed with their author, replies removed with their post.
 * The inverse sides say `onDelete: 'CASCADE'`: TypeORM 0.3 gives a junction's foreign key to them theirs (TypeORM 1 cascades by default).
 */
@Entity('cps_member')
export class CpsMember {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  handle!: string;

  @Column({ default: false })
  active!: boolean;

  @ManyToMany(() => CpsMember, (member) => member.followers)
  @JoinTable({ name: 'cps_member_follows', joinColumn: { name: 'src_member' }, inverseJoinColumn: { name: 'dst_member' } })
  following!: CpsMember[];

  @ManyToMany(() => CpsMember, (member) => member.following, { onDelete: 'CASCADE' })
  followers!: CpsMember[];

  @ManyToMany(() => CpsPost, (post) => post.likedBy, { onDelete: 'CASCADE' })
  likes!: CpsPost[];
}

@Entity('cps_post')
export class CpsPost {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @ManyToOne(() => CpsMember, { onDelete: 'CASCADE' })
  author!: CpsMember;

  @ManyToOne(() => CpsMember, { nullable: true, onDelete: 'SET NULL' })
  editor!: CpsMember | null;

  @ManyToMany(() => CpsMember, (member) => member.likes)
  @JoinTable({ name: 'cps_post_likes', joinColumn: { name: 'liked_post' }, inverseJoinColumn: { name: 'liking_member' } })
  likedBy!: CpsMember[];

  @OneToMany(() => CpsReply, (reply) => reply.post)
  replies!: CpsReply[];
}

@Entity('cps_reply')
export class CpsReply {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  text!: string;

  @ManyToOne(() => CpsPost, (post) => post.replies, { onDelete: 'CASCADE' })
  post!: CpsPost;

  @ManyToOne(() => CpsReply, { nullable: true, onDelete: 'CASCADE' })
  parent!: CpsReply | null;
}

export const CPS_SOCIAL_ENTITIES = [CpsMember, CpsPost, CpsReply];
