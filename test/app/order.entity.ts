import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

@Entity('orders')
export class Order {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 32, default: 'new' })
  status!: string;

  @Column({ type: 'int', default: 0 })
  total!: number;

  @Column({ type: 'varchar', length: 255, nullable: true })
  note!: string | null;
}
