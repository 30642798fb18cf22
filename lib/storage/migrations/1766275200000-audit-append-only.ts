import type { MigrationInterface, QueryRunner } from 'typeorm';
import { appendOnlyStatements } from '../append-only.js';

/**
 * Makes `audit_log`, `audit_tree` and `audit_checkpoint` append-only with triggers on
 * PostgreSQL, MySQL/MariaDB and SQLite: UPDATE and DELETE (and TRUNCATE on PostgreSQL)
 * are refused, except setting an event's NULL `seq` (with every other column unchanged)
 * and the deletes of the retention purge. `synchronize` does not create these triggers;
 * only this migration does. On other databases it changes nothing.
 */
export class AuditAppendOnly1766275200000 implements MigrationInterface {
  name = 'AuditAppendOnly1766275200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const statement of appendOnlyStatements(queryRunner).create) await queryRunner.query(statement);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const statement of appendOnlyStatements(queryRunner).drop) await queryRunner.query(statement);
  }
}
