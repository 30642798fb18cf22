import { Column, Entity, JoinTable, ManyToMany, PrimaryGeneratedColumn } from 'typeorm';
import { AuditExclude } from '../../lib/index.js';

@Entity('app_users')
export class User {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  email!: string;

  @Column({ type: 'varchar', length: 100, nullable: true })
  password!: string | null;

  @Column({ type: 'json', nullable: true })
  profile!: Record<string, unknown> | null;

  @Column({ type: 'int', default: 0 })
  @AuditExclude()
  loginCount!: number;

  @Column({ type: 'int', default: 0 })
  failedLogins!: number;

  @ManyToMany(() => User)
  @JoinTable({ name: 'user_following' })
  following!: User[];
}

/** Never audited: sessions churn and carry nothing a reviewer needs. */
@Entity('sessions')
@AuditExclude()
export class Session {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  token!: string;
}
