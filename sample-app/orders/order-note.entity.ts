import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** A free-text note on an order (customer service remarks, delivery hints). */
@Entity('order_notes')
@Index(['orderId'])
export class OrderNote {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ name: 'order_id', type: 'int' })
  orderId!: number;

  @Column({ name: 'author_id', type: 'varchar', length: 64 })
  authorId!: string;

  @Column({ type: 'varchar', length: 2000 })
  body!: string;

  @CreateDateColumn({ name: 'created_at' })
  createdAt!: Date;
}
