import { ChildEntity, Column, Entity, ManyToOne, OneToMany, PrimaryGeneratedColumn, TableInheritance, UpdateDateColumn, VersionColumn } from 'typeorm';
import { AuditExclude } from '../../lib/index.js';

/** Entities of the hostile cases of children moved to another parent by their key: each shape a case needs. */

/** A folder whose docs are saved with it (a doc taken out of the array is unlinked). */
@Entity('hr_folder')
export class HrFolder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => HrDoc, (doc) => doc.folder, { cascade: true }) docs?: HrDoc[];
}

/** A doc with a required title, a secret kept out of default reads, an excluded note, an update date and a version. */
@Entity('hr_doc')
export class HrDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) title!: string | null;
  @Column({ type: 'varchar', length: 64, nullable: true, select: false }) apiToken?: string | null;
  @AuditExclude() @Column({ type: 'varchar', length: 64, nullable: true }) note?: string | null;
  @UpdateDateColumn() updatedAt?: Date;
  @VersionColumn() version?: number;
  @ManyToOne(() => HrFolder, (folder) => folder.docs, { orphanedRowAction: 'nullify', nullable: true }) folder?: HrFolder | null;
}

/** A board whose cards' many-to-one does not name its inverse side (TypeORM only needs it on the one-to-many). */
@Entity('hr_board')
export class HrBoard {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => HrCard, (card) => card.board, { cascade: true }) cards?: HrCard[];
}

@Entity('hr_card')
export class HrCard {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) text!: string;
  @ManyToOne(() => HrBoard, { nullable: true }) board?: HrBoard | null;
}

/** A shelf whose books' many-to-one is lazy. */
@Entity('hr_shelf')
export class HrShelf {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => HrBook, (book) => book.shelf, { cascade: true }) books?: HrBook[];
}

@Entity('hr_book')
export class HrBook {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) title!: string;
  @ManyToOne(() => HrShelf, (shelf) => shelf.books, { lazy: true, nullable: true }) shelf?: Promise<HrShelf | null>;
}

/** A list whose tasks' relation to it is kept out of the trail. */
@Entity('hr_list')
export class HrList {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => HrTask, (task) => task.list, { cascade: true }) tasks?: HrTask[];
}

@Entity('hr_task')
export class HrTask {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) text!: string;
  @AuditExclude() @ManyToOne(() => HrList, (list) => list.tasks, { nullable: true }) list?: HrList | null;
}

/** A bin whose items are rows of one table, each of the entity its `kind` names. */
@Entity('hr_bin')
export class HrBin {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @OneToMany(() => HrItem, (item) => item.bin, { cascade: true }) items?: HrItem[];
}

@Entity('hr_item')
@TableInheritance({ column: { type: 'varchar', name: 'kind', length: 16 } })
export class HrItem {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @ManyToOne(() => HrBin, (bin) => bin.items, { nullable: true }) bin?: HrBin | null;
}

@ChildEntity('gadget')
export class HrGadget extends HrItem {
  @Column({ type: 'int', nullable: true }) power?: number | null;
}

export const HOSTILE_REPARENT_ENTITIES = [HrFolder, HrDoc, HrBoard, HrCard, HrShelf, HrBook, HrList, HrTask, HrBin, HrItem, HrGadget];
