import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** One line of a bulk import: a small row, written by the tens of thousands. */
@Entity('import_lines')
export class ImportLine {
  @PrimaryGeneratedColumn()
  id!: number;

  /** Which import wrote the line. */
  @Column({ type: 'varchar', length: 40 })
  batch!: string;

  @Column({ type: 'varchar', length: 40 })
  sku!: string;
}
