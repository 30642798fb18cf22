import { Column, DeleteDateColumn, Entity, JoinColumn, ManyToOne, OneToMany, OneToOne, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';

/** Entities of the capture cases (run through test/app/capture-harness.ts): each shape a case needs, nothing more. */

@Entity('cc_tag')
export class CaseTag {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

@Entity('cc_membership')
export class CaseMembership {
  @PrimaryColumn({ type: 'int' }) orgId!: number;
  @PrimaryColumn({ type: 'int' }) userId!: number;
  @Column({ type: 'varchar', length: 32 }) role!: string;
}

/** A post whose lines are saved with it: a line taken out of an array is an orphan, deleted, soft-deleted or unlinked. */
@Entity('cc_post')
export class CasePost {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 64 }) title!: string;
  @OneToMany(() => CaseLineD, (line) => line.post, { cascade: true }) linesD?: CaseLineD[];
  @OneToMany(() => CaseLineS, (line) => line.post, { cascade: true }) linesS?: CaseLineS[];
  @OneToMany(() => CaseLineN, (line) => line.post, { cascade: true }) linesN?: CaseLineN[];
}

@Entity('cc_line_d')
export class CaseLineD {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) text!: string;
  @ManyToOne(() => CasePost, (post) => post.linesD, { orphanedRowAction: 'delete', nullable: true }) post?: CasePost | null;
}

@Entity('cc_line_s')
export class CaseLineS {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) text!: string;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
  @ManyToOne(() => CasePost, (post) => post.linesS, { orphanedRowAction: 'soft-delete', nullable: true }) post?: CasePost | null;
}

@Entity('cc_line_n')
export class CaseLineN {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) text!: string;
  @ManyToOne(() => CasePost, (post) => post.linesN, { orphanedRowAction: 'nullify', nullable: true }) post?: CasePost | null;
}

/** An immutable account number (`update: false`). */
@Entity('cc_ledger')
export class CaseLedger {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) memo!: string;
  @Column({ type: 'varchar', length: 32, update: false }) account!: string;
}

@Entity('cc_device')
export class CaseDevice {
  @PrimaryColumn({ type: 'uuid' }) id!: string;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

/** A one-to-one saved from its inverse side: a badge given to a holder by its key moves to that holder. */
@Entity('cc_holder')
export class CaseHolder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToOne(() => CaseBadge, (badge) => badge.holder, { cascade: true }) badge?: CaseBadge | null;
}

@Entity('cc_badge')
export class CaseBadge {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) code!: string;
  @OneToOne(() => CaseHolder, (holder) => holder.badge, { nullable: true }) @JoinColumn() holder?: CaseHolder | null;
}

/** A key the database (PostgreSQL) or TypeORM (SQLite, MariaDB) generates as a uuid. */
@Entity('cc_ticket')
export class CaseTicket {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

export const CASE_ENTITIES = [CaseTag, CaseMembership, CasePost, CaseLineD, CaseLineS, CaseLineN, CaseLedger, CaseDevice, CaseHolder, CaseBadge, CaseTicket];
