import { Column, CreateDateColumn, Entity, PrimaryColumn, PrimaryGeneratedColumn, VersionColumn } from 'typeorm';

/** Entities of the hostile cases of inserts by query builder with `updateEntity(false)`: each shape a case needs. */

/** A row the database completes: a default, a creation date and a version it sets itself. */
@Entity('hi_note')
export class HiNote {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32, unique: true }) name!: string;
  @Column({ type: 'varchar', length: 16, default: 'draft' }) status!: string;
  @CreateDateColumn() createdAt!: Date;
  @VersionColumn() version!: number;
}

/** A secret column among the values. */
@Entity('hi_login')
export class HiLogin {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @Column({ type: 'varchar', length: 64 }) password!: string;
}

/** A generated key named like a secret: its value is never stored in clear. */
@Entity('hi_reset')
export class HiReset {
  @PrimaryGeneratedColumn('uuid') resetToken!: string;
  @Column({ type: 'varchar', length: 32 }) email!: string;
}

/** A composite key: one part given, one generated. */
@Entity('hi_seat')
export class HiSeat {
  @PrimaryColumn({ type: 'int' }) tenant!: number;
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 32 }) label!: string;
}

export const HOSTILE_INSERT_ID_ENTITIES = [HiNote, HiLogin, HiReset, HiSeat];
