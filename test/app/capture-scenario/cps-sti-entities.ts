import { ChildEntity, Column, Entity, JoinTable, ManyToMany, ManyToOne, PrimaryGeneratedColumn, TableInheritance } from 'typeorm';

/** Content of several kinds in one table (single-table inheritance), with remarks removed with it and labels linked to it. */
@Entity('cps_content')
@TableInheritance({ column: { type: 'varchar', name: 'kind' } })
export class CpsContent {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @ManyToMany(() => CpsTopic)
  @JoinTable({ name: 'cps_content_topics' })
  topics!: CpsTopic[];
}

@ChildEntity('video')
export class CpsVideo extends CpsContent {
  @Column({ nullable: true })
  seconds!: number;
}

@Entity('cps_topic')
export class CpsTopic {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity('cps_remark')
export class CpsRemark {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  text!: string;

  @ManyToOne(() => CpsContent, { onDelete: 'CASCADE' })
  content!: CpsContent;
}

@Entity('cps_video_note')
export class CpsVideoNote {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  text!: string;

  @ManyToOne(() => CpsVideo, { onDelete: 'CASCADE' })
  video!: CpsVideo;
}

export const CPS_STI_ENTITIES = [CpsContent, CpsVideo, CpsTopic, CpsRemark, CpsVideoNote];
