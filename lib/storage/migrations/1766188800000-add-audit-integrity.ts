import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { AUDIT_CHECKPOINT_TABLE, AUDIT_LOG_TABLE, AUDIT_TREE_TABLE } from '../../audit.constants.js';
import { createIndexIfMissing, createPortableTable, prefixed, type ColumnSpec } from './portable-table.js';

/** Drivers with partial indexes (MySQL/MariaDB find the same rows through `idx_audit_log_seq`, which ends in the primary key). */
const PARTIAL_INDEXES = new Set(['postgres', 'better-sqlite3', 'sqlite']);
const UNSEQUENCED_INDEX = 'idx_audit_log_unsequenced';

const TREE: ColumnSpec[] = [
  { name: 'level', type: 'int', primary: true },
  { name: 'idx', type: 'bigint', primary: true },
  { name: 'hash', type: 'varchar', length: 64 },
  { name: 'event_id', type: 'uuid', nullable: true },
];

const CHECKPOINT: ColumnSpec[] = [
  { name: 'tree_size', type: 'bigint', primary: true },
  { name: 'root_hash', type: 'varchar', length: 64 },
  { name: 'note', type: 'text' },
  { name: 'created_at', type: Date, precision: 3 },
];

/**
 * Tamper evidence: adds `audit_log.seq` (the event's position in the Merkle tree, unique)
 * and creates `audit_tree` (the tree's nodes) and `audit_checkpoint` (signed checkpoints).
 * Existing events get a `seq` once `integrity` is configured.
 */
export class AddAuditIntegrity1766188800000 implements MigrationInterface {
  name = 'AddAuditIntegrity1766188800000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const log = prefixed(queryRunner, AUDIT_LOG_TABLE);
    const driver = queryRunner.connection.driver;
    // A table `synchronize` made has the column and the unique index already.
    if (!(await queryRunner.hasColumn(log, 'seq'))) {
      await queryRunner.addColumn(log, new TableColumn({ name: 'seq', type: driver.normalizeType({ type: 'bigint' }), isNullable: true }));
    }
    await createIndexIfMissing(queryRunner, log, new TableIndex({ name: 'idx_audit_log_seq', columnNames: ['seq'], isUnique: true }));
    if (PARTIAL_INDEXES.has(String(queryRunner.connection.options.type))) {
      // The integrator's next batch, in id order, without reading past the events already sequenced.
      await createIndexIfMissing(queryRunner, log, new TableIndex({ name: UNSEQUENCED_INDEX, columnNames: ['id'], where: `${queryRunner.connection.driver.escape('seq')} IS NULL` }));
    }
    await createPortableTable(queryRunner, AUDIT_TREE_TABLE, TREE, []);
    await createPortableTable(queryRunner, AUDIT_CHECKPOINT_TABLE, CHECKPOINT, []);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_CHECKPOINT_TABLE), true);
    await queryRunner.dropTable(prefixed(queryRunner, AUDIT_TREE_TABLE), true);
    const log = prefixed(queryRunner, AUDIT_LOG_TABLE);
    if (PARTIAL_INDEXES.has(String(queryRunner.connection.options.type))) await queryRunner.dropIndex(log, UNSEQUENCED_INDEX);
    await queryRunner.dropIndex(log, 'idx_audit_log_seq');
    await queryRunner.dropColumn(log, 'seq');
  }
}
