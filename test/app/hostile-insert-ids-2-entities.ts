import { Column, CreateDateColumn, Entity, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';

/** Entities of further hostile cases of inserts that do not read generated values back. */

/** A row the database completes, with a column whose name holds the key's (`paid`) and a column not selected by default. */
@Entity('hj_note')
export class HjNote {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
  @Column({ type: 'varchar', length: 16, default: 'draft' }) status!: string;
  @Column({ type: 'boolean', default: false }) paid!: boolean;
  @Column({ type: 'varchar', length: 16, default: 'n', select: false }) pin!: string;
  @CreateDateColumn() createdAt!: Date;
}

/** A row keyed by its name: nothing generated. */
@Entity('hj_tag')
export class HjTag {
  @PrimaryColumn({ type: 'varchar', length: 32 }) name!: string;
}

/** A composite key: a generated bigint increment and a part given, and a default. */
@Entity('hj_line')
export class HjLine {
  @PrimaryGeneratedColumn({ type: 'bigint' }) id!: string;
  @PrimaryColumn({ type: 'int' }) tenant!: number;
  @Column({ type: 'varchar', length: 32 }) label!: string;
  @Column({ type: 'varchar', length: 16, default: 'draft' }) status!: string;
}

/** A uuid key. */
@Entity('hj_doc')
export class HjDoc {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

/** A table an app may insert into without reading it back (PostgreSQL grants). */
@Entity('hj_drop')
export class HjDrop {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 32 }) name!: string;
}

export const HOSTILE_INSERT_ID_2_ENTITIES = [HjNote, HjTag, HjLine, HjDoc, HjDrop];
