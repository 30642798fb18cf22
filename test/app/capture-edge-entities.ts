import { Column, Entity, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';

/** A plain entity, written by query builders whose WHERE names its table. */
@Entity('edge_tag')
export class EdgeTag {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

/** Referred to by {@link EdgeThing}; its `handle` is secret by its column name only. */
@Entity('edge_owner')
export class EdgeOwner {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 64 }) label!: string;
  @Column({ name: 'api_token', type: 'varchar', length: 64 }) handle!: string;
}

@Entity('edge_thing')
export class EdgeThing {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) grp!: string;
  @ManyToOne(() => EdgeOwner, { nullable: true }) owner?: EdgeOwner | null;
}

/** A column kept out of TypeORM's default reads (`select: false`). */
@Entity('edge_hidden')
export class EdgeHidden {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) title!: string;
  @Column({ type: 'varchar', length: 64, select: false, nullable: true }) internalNote?: string | null;
  @Column({ type: 'simple-json', nullable: true }) data?: unknown;
}

/** A secret kept out of default reads, as a password hash usually is. */
@Entity('edge_account')
export class EdgeAccount {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) login!: string;
  @Column({ type: 'varchar', length: 64, select: false }) passwordHash?: string;
}
