import type { MigrationInterface, QueryRunner } from 'typeorm';
import { AUDIT_INSTANCE_TABLE, AUDIT_JOURNAL_TABLE } from '../../audit.constants.js';
import { createPortableTable, prefixed, type ColumnSpec } from './portable-table.js';

const JOURNAL: ColumnSpec[] = [
  { name: 'id', type: 'uuid', primary: true },
  { name: 'unit_id', type: 'uuid' },
  { name: 'instance_id', type: 'uuid' },
  { name: 'created_at', type: Date, precision: 3 },
  { name: 'entry', type: 'json' },
];

const INSTANCE: ColumnSpec[] = [
  { name: 'id', type: 'uuid', primary: true },
  { name: 'started_at', type: Date, precision: 3 },
  { name: 'heartbeat_at', type: Date, precision: 3 },
];

/**
 * Creates `audit_journal` (committed changes whose events are not stored yet) and
 * `audit_instance` (the leases of running app instances, for recovery).
 */
export class CreateAuditJournal1764979200000 implements MigrationInterface {
  name = 'CreateAuditJournal1764979200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createPortableTable(queryRunner, AUDIT_JOURNAL_TABLE, JOURNAL, [
      ['idx_audit_journal_unit', ['unit_id']],
      ['idx_audit_journal_instance', ['instance_id', 'created_at']],
    ]);
    await createPortableTable(queryRunner, AUDIT_INSTANCE_TABLE, INSTANCE, []);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_INSTANCE_TABLE), true);
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_JOURNAL_TABLE), true);
  }
}
