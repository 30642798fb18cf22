import type { MigrationInterface, QueryRunner } from 'typeorm';
import { AUDIT_SUBJECT_TABLE } from '../../audit.constants.js';
import { createPortableTable, prefixed, type ColumnSpec } from './portable-table.js';

const COLUMNS: ColumnSpec[] = [
  { name: 'subject_type', type: 'varchar', length: 128, primary: true },
  { name: 'subject_id', type: 'varchar', length: 255, primary: true },
  { name: 'event_id', type: 'uuid', primary: true },
  { name: 'occurred_at', type: Date, precision: 3 },
];

/**
 * Creates `audit_subject`: the entity instances an event is about besides its target
 * (the instances its changes touch, the instances they link), read by `history()`.
 * Events stored before it exists are found by their target only.
 */
export class CreateAuditSubject1765584000000 implements MigrationInterface {
  name = 'CreateAuditSubject1765584000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createPortableTable(queryRunner, AUDIT_SUBJECT_TABLE, COLUMNS, [
      ['idx_audit_subject_history', ['subject_type', 'subject_id', 'occurred_at', 'event_id']],
    ]);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_SUBJECT_TABLE), true);
  }
}
