import type { MigrationInterface, QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../../audit.constants.js';
import { createPortableTable, prefixed, type ColumnSpec } from './portable-table.js';

/** The columns of version 1 of `audit_log`, in the entity's portable types. */
const COLUMNS: ColumnSpec[] = [
  { name: 'id', type: 'uuid', primary: true },
  { name: 'occurred_at', type: Date, precision: 3 },
  { name: 'action', type: 'varchar', length: 128 },
  { name: 'outcome', type: 'varchar', length: 16 },
  { name: 'kind', type: 'varchar', length: 16 },
  { name: 'actor_type', type: 'varchar', length: 64 },
  { name: 'actor_id', type: 'varchar', length: 255, nullable: true },
  { name: 'actor_display', type: 'varchar', length: 255, nullable: true },
  { name: 'source', type: 'varchar', length: 64 },
  { name: 'ip', type: 'varchar', length: 64, nullable: true },
  { name: 'user_agent', type: 'varchar', length: 512, nullable: true },
  { name: 'method', type: 'varchar', length: 16, nullable: true },
  { name: 'route', type: 'varchar', length: 512, nullable: true },
  { name: 'path', type: 'varchar', length: 2048, nullable: true },
  { name: 'request_id', type: 'varchar', length: 128, nullable: true },
  { name: 'target_type', type: 'varchar', length: 128, nullable: true },
  { name: 'target_id', type: 'varchar', length: 255, nullable: true },
  { name: 'changes', type: 'json', nullable: true },
  { name: 'context', type: 'json', nullable: true },
  { name: 'reason', type: 'varchar', length: 1024, nullable: true },
  { name: 'error', type: 'json', nullable: true },
];

const INDEXES: Array<[string, string[]]> = [
  ['idx_audit_log_target', ['target_type', 'target_id', 'occurred_at']],
  ['idx_audit_log_actor', ['actor_type', 'actor_id', 'occurred_at']],
  ['idx_audit_log_occurred_at', ['occurred_at']],
  ['idx_audit_log_action', ['action', 'occurred_at']],
];

/**
 * Creates `audit_log` on PostgreSQL, MySQL/MariaDB or SQLite, with the indexes for a
 * target's history and an actor's activity. Each driver maps the portable types to
 * its own, exactly as it does for `AuditLogEntity`.
 */
export class CreateAuditLog1764201600000 implements MigrationInterface {
  name = 'CreateAuditLog1764201600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createPortableTable(queryRunner, AUDIT_LOG_TABLE, COLUMNS, INDEXES);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_LOG_TABLE), true);
  }
}
