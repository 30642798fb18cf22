import { Column, Entity, PrimaryColumn, type DataSource } from 'typeorm';
import type { AuditActor, AuditModuleOptions, AuditRequest } from '../../lib/index.js';

/** A user account that remembers when it was last active. */
@Entity('hostile_accounts')
export class HostileAccount {
  @PrimaryColumn({ type: 'int' })
  id!: number;

  @Column({ type: 'varchar', length: 100 })
  email!: string;

  @Column({ type: 'bigint', default: 0 })
  lastSeenMs!: string;
}

/**
 * Audit options whose actor resolver also notes the account's last activity (a write, as
 * "touch the session" resolvers do). Reads `request.user` as set by `TokenGuard`.
 */
export function touchingActorOptions(dataSource: DataSource): AuditModuleOptions {
  return {
    actor: async (request: AuditRequest): Promise<AuditActor | undefined> => {
      const user = request.user as { id: number; email: string } | undefined;
      if (!user) return undefined;
      await dataSource.getRepository(HostileAccount).update({ id: user.id }, { lastSeenMs: String(Date.now()) });
      return { type: 'user', id: String(user.id), display: user.email };
    },
  };
}
