import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { AUDIT_SUBJECT_TABLE } from '../../audit.constants.js';
import { createIndexIfMissing, prefixed } from './portable-table.js';

/**
 * Indexes `audit_subject` by event: the retention purge deletes the subject rows of the
 * events it removes, a batch at a time, without reading the whole table.
 */
export class AddAuditSubjectEventIndex1766448000000 implements MigrationInterface {
  name = 'AddAuditSubjectEventIndex1766448000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createIndexIfMissing(queryRunner, prefixed(queryRunner, AUDIT_SUBJECT_TABLE), new TableIndex({ name: 'idx_audit_subject_event', columnNames: ['event_id'] }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex(prefixed(queryRunner, AUDIT_SUBJECT_TABLE), 'idx_audit_subject_event');
  }
}
