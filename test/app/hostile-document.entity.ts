import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A document whose JSON column holds a long list (tags, line items, a sparse matrix…). */
@Entity('hostile_documents')
export class HostileDocument {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 64 })
  title!: string;

  /** Many short strings: each one far below any string bound, the list as a whole large. */
  @Column({ type: 'json' })
  items!: string[];
}
