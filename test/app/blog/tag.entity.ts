import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

@Entity('blog_tags')
export class Tag {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 60 })
  name!: string;
}
