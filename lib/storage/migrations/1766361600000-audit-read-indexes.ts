import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { AUDIT_LOG_TABLE } from '../../audit.constants.js';
import { prefixed } from './portable-table.js';

type IndexSpec = [name: string, columns: string[]];

/**
 * The read-side indexes of `audit_log` after this migration. Each ends with
 * `(occurred_at, id)`, the order `find()` pages in (and `export()` reads in), so the
 * database walks the index in that order and stops at the page instead of sorting every
 * matching row.
 */
export const AUDIT_READ_INDEXES: readonly IndexSpec[] = [
  ['idx_audit_log_target', ['target_type', 'target_id', 'occurred_at', 'id']],
  ['idx_audit_log_actor', ['actor_type', 'actor_id', 'occurred_at', 'id']],
  ['idx_audit_log_action', ['action', 'occurred_at', 'id']],
  ['idx_audit_log_occurred_at', ['occurred_at', 'id']],
  ['idx_audit_log_source_outcome', ['source', 'outcome', 'occurred_at', 'id']],
];

/** The same indexes before this migration (`down()` restores them; the last one did not exist). */
const PREVIOUS: readonly IndexSpec[] = [
  ['idx_audit_log_target', ['target_type', 'target_id', 'occurred_at']],
  ['idx_audit_log_actor', ['actor_type', 'actor_id', 'occurred_at']],
  ['idx_audit_log_action', ['action', 'occurred_at']],
  ['idx_audit_log_occurred_at', ['occurred_at']],
];

/** Whether an index has exactly `columns` (as a set: TypeORM reads PostgreSQL's back in table order). */
const sameColumns = (index: TableIndex, columns: readonly string[]): boolean =>
  index.columnNames.length === columns.length && columns.every((column) => index.columnNames.includes(column));

/** Creates each index of `wanted`, replacing an index of the same name with other columns, keeping one already right. */
async function applyIndexes(queryRunner: QueryRunner, wanted: readonly IndexSpec[], drop: readonly string[]): Promise<void> {
  const name = prefixed(queryRunner, AUDIT_LOG_TABLE);
  const table = await queryRunner.getTable(name);
  if (!table) throw new Error(`table ${name} does not exist: run the migrations before AuditReadIndexes1766361600000`);
  for (const indexName of drop) {
    if (table.indices.some((index) => index.name === indexName)) await queryRunner.dropIndex(table, indexName);
  }
  for (const [indexName, columns] of wanted) {
    const existing = table.indices.find((index) => index.name === indexName);
    if (existing && sameColumns(existing, columns)) continue; // built beforehand (e.g. CONCURRENTLY, see docs/audit-record.md)
    if (existing) await queryRunner.dropIndex(table, indexName);
    await queryRunner.createIndex(table, new TableIndex({ name: indexName, columnNames: [...columns] }));
  }
}

/**
 * The read side's indexes: every index `find()` uses ends with `(occurred_at, id)`, the
 * order it pages in, so a page is read in index order and the scan stops at the page
 * (no sort of every matching row), and `(source, outcome, occurred_at, id)` serves
 * `find({ source, outcome })`. Replaces the target, actor, action and time indexes under
 * the same names. An index that already has the wanted columns (built by hand beforehand,
 * for instance `CREATE INDEX CONCURRENTLY` on a large PostgreSQL table) is kept as it is.
 */
export class AuditReadIndexes1766361600000 implements MigrationInterface {
  name = 'AuditReadIndexes1766361600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await applyIndexes(queryRunner, AUDIT_READ_INDEXES, []);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await applyIndexes(queryRunner, PREVIOUS, ['idx_audit_log_source_outcome']);
  }
}
