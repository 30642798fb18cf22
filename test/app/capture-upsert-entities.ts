import { ChildEntity, Column, Entity, ManyToOne, OneToMany, PrimaryColumn, PrimaryGeneratedColumn, TableInheritance, Unique } from 'typeorm';

@Entity('cap_kv')
export class CapKv {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 64, unique: true }) k!: string;
  @Column({ type: 'varchar', length: 64 }) v!: string;
}

@Entity('cap_membership')
export class CapMembership {
  @PrimaryColumn({ type: 'int' }) orgId!: number;
  @PrimaryColumn({ type: 'int' }) userId!: number;
  @Column({ type: 'varchar', length: 32 }) role!: string;
}

@Entity('cap_content')
@TableInheritance({ column: { type: 'varchar', length: 32, name: 'kind' } })
export class CapContent {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 64 }) title!: string;
}
@ChildEntity('photo')
export class CapPhoto extends CapContent {
  @Column({ type: 'int', nullable: true }) width!: number | null;
}
@ChildEntity('video')
export class CapVideo extends CapContent {
  @Column({ type: 'int', nullable: true }) seconds!: number | null;
}

@Entity('cap_album')
export class CapAlbum {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) title!: string;
  @OneToMany(() => CapTrack, (t) => t.album, { cascade: true }) tracks?: CapTrack[];
}
@Entity('cap_track')
export class CapTrack {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @ManyToOne(() => CapAlbum, (a) => a.tracks, { onDelete: 'CASCADE', nullable: true }) album?: CapAlbum | null;
}

/** A vote per album and voter: a unique key that holds a relation's column. */
@Entity('cap_vote')
@Unique(['album', 'voter'])
export class CapVote {
  @PrimaryGeneratedColumn() id!: number;
  @ManyToOne(() => CapAlbum, { nullable: false }) album!: CapAlbum;
  @Column({ type: 'varchar', length: 32 }) voter!: string;
  @Column({ type: 'int' }) value!: number;
}

export const CAPTURE_CASES_ENTITIES = [CapKv, CapMembership, CapContent, CapPhoto, CapVideo, CapAlbum, CapTrack, CapVote];
