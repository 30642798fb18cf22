import { Column, Entity, PrimaryColumn } from 'typeorm';
import { AUDIT_INSTANCE_TABLE } from '../audit.constants.js';
import { UTC_DATE_COLUMN } from './utc-date.transformer.js';

/**
 * One row of `audit_instance` per running app instance (process): its lease. An instance
 * whose heartbeat is older than `recoverAfter` is taken for dead, and its journal rows are
 * recovered into events by another (or by itself after a restart).
 */
@Entity(AUDIT_INSTANCE_TABLE)
export class AuditInstanceEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'started_at', type: Date, precision: 3, transformer: UTC_DATE_COLUMN })
  startedAt!: Date;

  @Column({ name: 'heartbeat_at', type: Date, precision: 3, transformer: UTC_DATE_COLUMN })
  heartbeatAt!: Date;
}
