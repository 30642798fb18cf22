import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type OrderStatus = 'pending' | 'paid' | 'cancelled' | 'refunded' | 'expired';

@Entity('orders')
@Index(['status', 'createdAt'])
export class Order {
  @PrimaryGeneratedColumn()
  id!: number;

  /** The user who placed the order. */
  @Column({ name: 'customer_id', type: 'varchar', length: 64 })
  customerId!: string;

  @Column({ type: 'varchar', length: 200 })
  description!: string;

  @Column({ name: 'total_cents', type: 'int' })
  totalCents!: number;

  @Column({ type: 'varchar', length: 3, default: 'EUR' })
  currency!: string;

  @Column({ type: 'varchar', length: 16, default: 'pending' })
  status!: OrderStatus;

  @CreateDateColumn({ name: 'created_at' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at' })
  updatedAt!: Date;
}
